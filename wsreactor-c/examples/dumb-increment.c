/*
 * A C port of the libwebsockets 1.x test server's dumb-increment protocol on the
 * lws-style API (libwebsockets.h), with an HTTP protocol first and a "lws-test" protocol
 * that tests/test_lws.py uses to look at the rest of the API.
 *
 * Usage: dumb-increment [--poll] FILE PORT
 *   --poll  the program's own poll() loop (LWS_SERVER_OPTION_EXTERNAL_POLL, the
 *           *_POLL_FD reasons, libwebsocket_service_fd) instead of libwebsocket_service
 *   FILE    served for GET /file by libwebsockets_serve_http_file
 *
 * dumb-increment-protocol: every 50 ms each connection gets the next number of its own
 * counter (per-session data); "reset\n" sets it back to 0.
 * lws-test (rx_buffer_size 16, so longer messages come in pieces), per message piece:
 *   "flow ..."  pauses its reading (rx_flow_control 0); the main loop resumes every
 *               paused one 300 ms later (rx_flow_allow_all_protocol)
 *   "stale?"    the main loop tries the wsi of the last closed dumb-increment connection
 *               (callback_on_writable, write, rx_flow_control) and answers at WRITEABLE
 *   "stale-in?" the same from inside this callback, where requests about another
 *               connection are carried out after it: callback_on_writable and
 *               rx_flow_control on that stale wsi and on the last opened dumb-increment
 *               connection, if still open; answers at WRITEABLE
 *   "cancel?"   the main loop blocks in service for up to 10 s while a thread calls
 *               libwebsocket_cancel_service after 100 ms; answers how long it waited
 *   anything else: "piece len=.. bin=.. final=.. remaining=.. proto=.. user=.. fd-ok=.."
 */
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>
#include <libwebsockets.h>

static const char *file_to_serve;
static struct libwebsocket_protocols protocols[];
static struct libwebsocket *last_closed, *last_opened;
static struct libwebsocket *asker;
static int want_stale, want_cancel, flow_paused;
static char answer[512];
static long long flow_at;

static long long now_ms(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* the external poll set */
#define MAX_FDS 4096
static struct pollfd fds[MAX_FDS];
static int nfds;

static int callback_http(struct libwebsocket_context *context, struct libwebsocket *wsi,
	enum libwebsocket_callback_reasons reason, void *user, void *in, size_t len)
{
	struct libwebsocket_pollargs *pa = in;
	char name[128], rip[64];
	(void)user; (void)len;
	switch (reason) {
	case LWS_CALLBACK_HTTP:
		if (strcmp(in, "/file") == 0) {
			static const char extra[] = "X-Served-By: dumb-increment\r\n";
			if (libwebsockets_serve_http_file(context, wsi, file_to_serve, "text/plain",
					extra, (int)strlen(extra)))
				return -1;
		} else if (libwebsockets_return_http_status(context, wsi, 404, "nothing here"))
			return -1;
		break;
	case LWS_CALLBACK_FILTER_NETWORK_CONNECTION:
		libwebsockets_get_peer_addresses(context, wsi, (int)(long)user,
			name, sizeof name, rip, sizeof rip);
		if (strcmp(rip, "127.0.0.1") != 0) {
			fprintf(stderr, "dumb-increment: ERROR peer %s (%s)\n", rip, name);
			return 1;
		}
		break;
	case LWS_CALLBACK_ADD_POLL_FD:
		if (nfds >= MAX_FDS)
			return 1;
		fds[nfds].fd = pa->fd;
		fds[nfds].events = (short)pa->events;
		fds[nfds++].revents = 0;
		break;
	case LWS_CALLBACK_DEL_POLL_FD:
		for (int n = 0; n < nfds; n++)
			if (fds[n].fd == pa->fd) {
				fds[n] = fds[--nfds];
				break;
			}
		break;
	case LWS_CALLBACK_CHANGE_MODE_POLL_FD:
		for (int n = 0; n < nfds; n++)
			if (fds[n].fd == pa->fd)
				fds[n].events = (short)pa->events;
		break;
	default:
		break;
	}
	return 0;
}

struct per_session_data__dumb_increment {
	int number;
};

static int callback_dumb_increment(struct libwebsocket_context *context,
	struct libwebsocket *wsi, enum libwebsocket_callback_reasons reason,
	void *user, void *in, size_t len)
{
	unsigned char buf[LWS_SEND_BUFFER_PRE_PADDING + 512 + LWS_SEND_BUFFER_POST_PADDING];
	unsigned char *p = &buf[LWS_SEND_BUFFER_PRE_PADDING];
	struct per_session_data__dumb_increment *pss = user;
	int n, m;
	(void)context;
	switch (reason) {
	case LWS_CALLBACK_ESTABLISHED:
		pss->number = 0;
		last_opened = wsi;
		break;
	case LWS_CALLBACK_SERVER_WRITEABLE:
		n = sprintf((char *)p, "%d", pss->number++);
		m = libwebsocket_write(wsi, p, n, LWS_WRITE_TEXT);
		if (m < n) {
			fprintf(stderr, "dumb-increment: ERROR %d writing\n", n);
			return -1;
		}
		break;
	case LWS_CALLBACK_RECEIVE:
		if (len >= 6 && strncmp((const char *)in, "reset\n", 6) == 0)
			pss->number = 0;
		break;
	case LWS_CALLBACK_CLOSED:
		last_closed = wsi;
		if (last_opened == wsi)
			last_opened = NULL;
		break;
	default:
		break;
	}
	return 0;
}

static int callback_lws_test(struct libwebsocket_context *context, struct libwebsocket *wsi,
	enum libwebsocket_callback_reasons reason, void *user, void *in, size_t len)
{
	unsigned char buf[LWS_PRE + 512];
	unsigned char *p = &buf[LWS_PRE];
	const struct libwebsocket_protocols *pr;
	int n;
	(void)user;
	switch (reason) {
	case LWS_CALLBACK_RECEIVE:
		if (len >= 4 && strncmp(in, "flow", 4) == 0) {
			libwebsocket_rx_flow_control(wsi, 0);
			flow_paused = 1;
			flow_at = now_ms() + 300;
			break;
		}
		if (len == 6 && strncmp(in, "stale?", 6) == 0) {
			asker = wsi;
			want_stale = 1;
			break;
		}
		if (len == 9 && strncmp(in, "stale-in?", 9) == 0) {
			snprintf(answer, sizeof answer,
				"stale-in have=%d writable=%d flow=%d live=%d live-writable=%d live-flow=%d",
				last_closed != NULL,
				libwebsocket_callback_on_writable(context, last_closed),
				libwebsocket_rx_flow_control(last_closed, 1),
				last_opened != NULL,
				last_opened ? libwebsocket_callback_on_writable(context, last_opened) : -9,
				last_opened ? libwebsocket_rx_flow_control(last_opened, 1) : -9);
			asker = wsi;
			libwebsocket_callback_on_writable(context, wsi);
			break;
		}
		if (len == 7 && strncmp(in, "cancel?", 7) == 0) {
			asker = wsi;
			want_cancel = 1;
			break;
		}
		pr = libwebsockets_get_protocol(wsi);
		n = snprintf((char *)p, 512, "piece len=%zu bin=%d final=%d remaining=%zu proto=%s user=%s fd-ok=%d",
			len, lws_frame_is_binary(wsi), libwebsocket_is_final_fragment(wsi),
			libwebsockets_remaining_packet_payload(wsi), pr ? pr->name : "NULL",
			(const char *)libwebsocket_context_user(context),
			libwebsocket_get_socket_fd(wsi) > 2);
		if (libwebsocket_write(wsi, p, n, LWS_WRITE_TEXT) != n)
			return -1;
		break;
	case LWS_CALLBACK_SERVER_WRITEABLE:
		if (wsi == asker && answer[0]) {
			n = (int)strlen(answer);
			memcpy(p, answer, n);
			answer[0] = 0;
			if (libwebsocket_write(wsi, p, n, LWS_WRITE_TEXT) != n)
				return -1;
		}
		break;
	default:
		break;
	}
	return 0;
}

static struct libwebsocket_protocols protocols[] = {
	{ "http-only", callback_http, 0, 0, 0, NULL, 0 },
	{ "dumb-increment-protocol", callback_dumb_increment,
		sizeof(struct per_session_data__dumb_increment), 10, 0, NULL, 0 },
	{ "lws-test", callback_lws_test, 0, 16, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 }
};

static void *canceller(void *p)
{
	usleep(100 * 1000);
	libwebsocket_cancel_service(p);
	return NULL;
}

static int service(struct libwebsocket_context *context, int external, int ms)
{
	if (!external)
		return libwebsocket_service(context, ms);
	int n = poll(fds, nfds, ms);
	if (n < 0)
		return -1;
	for (int i = 0; i < nfds && n > 0; i++) {
		if (!fds[i].revents)
			continue;
		n--;
		struct libwebsocket_pollfd pfd = { fds[i].fd, fds[i].events, fds[i].revents };
		if (libwebsocket_service_fd(context, &pfd) < 0)
			fprintf(stderr, "dumb-increment: service_fd %d failed\n", pfd.fd);
	}
	return libwebsocket_service_fd(context, NULL);
}

int main(int argc, char **argv)
{
	struct lws_context_creation_info info;
	struct libwebsocket_context *context;
	int external = argc > 1 && strcmp(argv[1], "--poll") == 0;
	long long last = 0;
	if (argc < 3 + external) {
		fprintf(stderr, "usage: dumb-increment [--poll] FILE PORT\n");
		return 2;
	}
	file_to_serve = argv[1 + external];
	memset(&info, 0, sizeof info);
	info.port = atoi(argv[2 + external]);
	info.iface = "127.0.0.1";
	info.protocols = protocols;
	info.gid = -1;
	info.uid = -1;
	info.user = "the-context-user";
	info.options = external ? LWS_SERVER_OPTION_EXTERNAL_POLL : 0;
	context = libwebsocket_create_context(&info);
	if (!context) {
		fprintf(stderr, "dumb-increment: ERROR creating the context\n");
		return 1;
	}
	if (protocols[1].owning_server != context || protocols[2].protocol_index != 2)
		fprintf(stderr, "dumb-increment: ERROR protocols not filled in\n");
	fprintf(stderr, "dumb-increment: serving port %d (%s, %s)\n", info.port,
		external ? "external poll" : "libwebsocket_service", lws_get_library_version());
	for (;;) {
		if (service(context, external, 50) < 0)
			break;
		if (now_ms() - last >= 50) {
			libwebsocket_callback_on_writable_all_protocol(&protocols[1]);
			last = now_ms();
		}
		if (flow_paused && now_ms() >= flow_at) {
			libwebsocket_rx_flow_allow_all_protocol(&protocols[2]);
			flow_paused = 0;
		}
		if (want_stale) {
			unsigned char x[LWS_PRE + 1] = { 0 };
			want_stale = 0;
			snprintf(answer, sizeof answer, "stale have=%d writable=%d write=%d flow=%d bin=%d",
				last_closed != NULL,
				libwebsocket_callback_on_writable(context, last_closed),
				libwebsocket_write(last_closed, &x[LWS_PRE], 1, LWS_WRITE_TEXT),
				libwebsocket_rx_flow_control(last_closed, 1),
				lws_frame_is_binary(last_closed));
			libwebsocket_callback_on_writable(context, asker);
		}
		if (want_cancel) {
			pthread_t t;
			long long t0 = now_ms();
			want_cancel = 0;
			pthread_create(&t, NULL, canceller, context);
			if (external) {
				/* our own poll waits: the cancel wakes it through the waker's fd */
				service(context, external, 10000);
			} else {
				libwebsocket_service(context, 10000);
			}
			pthread_join(t, NULL);
			snprintf(answer, sizeof answer, "cancel waited-ms=%lld", now_ms() - t0);
			libwebsocket_callback_on_writable(context, asker);
		}
	}
	libwebsocket_context_destroy(context);
	return 1;
}
