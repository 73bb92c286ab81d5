/*
 * The parts of the wsServer API a client cannot see by itself, driven by
 * tests/test_wsserver.py through commands in text messages:
 *   "spawn N M"  N threads each send M messages "t<i> <j>" to this client
 *   "bcast X"    a thread broadcasts X (ws_sendframe with a NULL client)
 *   "pingme"     a thread calls ws_ping(client, 2) 6 times, 150 ms apart
 *   "closeme"    a thread closes this client (ws_close_client) and keeps its handle
 *   "stale?"     answers the results of every call on the handle kept by "closeme"
 *   "state?"     answers ws_get_state(this client)
 *   "count?"     answers ws_get_connections()
 *   anything else is echoed (whole messages, the type kept)
 * The loop runs on its own thread (thread_loop = 1); main waits in ws_start().
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <ws.h>

static ws_cli_conn_t *volatile closed_handle;

struct job { ws_cli_conn_t *cli; int i, m; char text[256]; };

static void *sender(void *p)
{
	struct job *j = p;
	char buf[64];
	for (int k = 0; k < j->m; k++) {
		snprintf(buf, sizeof buf, "t%d %d", j->i, k);
		if (ws_sendframe_txt(j->cli, buf) < 0)
			fprintf(stderr, "threads: ERROR send failed\n");
	}
	free(j);
	return NULL;
}

static void *broadcaster(void *p)
{
	struct job *j = p;
	ws_sendframe(NULL, j->text, strlen(j->text), WS_FR_OP_TXT);
	free(j);
	return NULL;
}

static void *pinger(void *p)
{
	struct job *j = p;
	for (int k = 0; k < 6; k++) {
		ws_ping(j->cli, 2);
		usleep(150 * 1000);
	}
	free(j);
	return NULL;
}

static void *closer(void *p)
{
	struct job *j = p;
	closed_handle = j->cli;
	ws_close_client(j->cli);
	free(j);
	return NULL;
}

static void spawn(void *(*f)(void *), ws_cli_conn_t *cli, int i, int m, const char *text)
{
	pthread_t t;
	struct job *j = calloc(1, sizeof *j);
	j->cli = cli; j->i = i; j->m = m;
	if (text)
		snprintf(j->text, sizeof j->text, "%s", text);
	pthread_create(&t, NULL, f, j);
	pthread_detach(t);
}

static void onopen(ws_cli_conn_t *client)
{
	if (ws_get_state(client) != WS_STATE_OPEN)
		fprintf(stderr, "threads: ERROR onopen state %d\n", ws_get_state(client));
}

static void onclose(ws_cli_conn_t *client)
{
	if (ws_get_state(client) != WS_STATE_CLOSED)
		fprintf(stderr, "threads: ERROR onclose state %d\n", ws_get_state(client));
}

static void onmessage(ws_cli_conn_t *client, const unsigned char *msg, uint64_t size, int type)
{
	const char *m = (const char *)msg;
	char buf[256];
	int n, k;
	if (type == WS_FR_OP_TXT && sscanf(m, "spawn %d %d", &n, &k) == 2) {
		for (int i = 0; i < n; i++)
			spawn(sender, client, i, k, NULL);
	} else if (type == WS_FR_OP_TXT && strncmp(m, "bcast ", 6) == 0) {
		spawn(broadcaster, client, 0, 0, m + 6);
	} else if (type == WS_FR_OP_TXT && strcmp(m, "pingme") == 0) {
		spawn(pinger, client, 0, 0, NULL);
	} else if (type == WS_FR_OP_TXT && strcmp(m, "closeme") == 0) {
		spawn(closer, client, 0, 0, NULL);
	} else if (type == WS_FR_OP_TXT && strcmp(m, "stale?") == 0) {
		ws_cli_conn_t *old = closed_handle;
		char *addr = ws_getaddress(old);
		snprintf(buf, sizeof buf, "stale same-slot=%d state=%d fd=%d addr=%s close=%d send=%d bin=%d frame=%d",
			((uintptr_t)old & 0xffffffffu) == ((uintptr_t)client & 0xffffffffu),
			ws_get_state(old), ws_get_fd(old), addr ? addr : "NULL",
			ws_close_client(old), ws_sendframe_txt(old, "x"),
			ws_sendframe_bin(old, "x", 1), ws_sendframe(old, "x", 1, WS_FR_OP_TXT));
		ws_sendframe_txt(client, buf);
	} else if (type == WS_FR_OP_TXT && strcmp(m, "state?") == 0) {
		snprintf(buf, sizeof buf, "state %d fd-ok=%d addr=%s", ws_get_state(client),
			ws_get_fd(client) > 2, ws_getaddress(client));
		ws_sendframe_txt(client, buf);
	} else if (type == WS_FR_OP_TXT && strcmp(m, "count?") == 0) {
		snprintf(buf, sizeof buf, "count %d", ws_get_connections());
		ws_sendframe_txt(client, buf);
	} else {
		/* whole messages: the length says it all, the NUL is there too */
		if (msg[size] != 0)
			fprintf(stderr, "threads: ERROR message not NUL-terminated\n");
		ws_sendframe(client, m, size, type);
	}
}

int main(int argc, char **argv)
{
	struct ws_events evs = { onopen, onclose, onmessage };
	uint16_t port = argc > 1 ? (uint16_t)atoi(argv[1]) : 8080;
	if (ws_socket(&evs, port, 1, 1000) != 0) {
		fprintf(stderr, "threads: ws_socket failed\n");
		return 1;
	}
	fprintf(stderr, "threads: serving port %u\n", port);
	return ws_start();
}
