/*
 * libwebsockets.h: a libwebsockets 1.x style core, served by wsreactor (libwsreactor_c).
 *
 * Names, the callback signature, the reason numbers and the struct layouts are those of
 * libwebsockets 1.x, so that a server written for it compiles with few or no changes.
 * What differs (see the README):
 *  - a struct libwebsocket * is a generation-checked handle, not memory: a wsi kept after
 *    its connection closed gets -1 from every function;
 *  - libwebsocket_write copies the payload into the connection's out buffer: the
 *    LWS_SEND_BUFFER_PRE_PADDING (= LWS_PRE) headroom before the buffer is not needed and
 *    not touched (keeping it costs nothing, so lws code stays as it is); it writes only to
 *    the connection of the running callback;
 *  - external poll (LWS_CALLBACK_ADD_POLL_FD etc. + libwebsocket_service_fd) needs the
 *    option LWS_SERVER_OPTION_EXTERNAL_POLL (ours); without it libwebsocket_service polls;
 *  - no extensions, no OpenSSL objects (PERFORM_CLIENT_CERT_VERIFICATION gets in = NULL,
 *    len = 1 after rustls verified the chain), no client connections in this header yet.
 * Hand-written; wsreactor-c/tests/check-headers.sh checks it against the exports.
 */
#ifndef LIBWEBSOCKETS_H
#define LIBWEBSOCKETS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LWS_EXTERN extern
#define CONTEXT_PORT_NO_LISTEN -1

/* Headroom lws 1.x needs before and after a write buffer; unused here (see above). */
#define LWS_SEND_BUFFER_PRE_PADDING 16
#define LWS_SEND_BUFFER_POST_PADDING 4
#define LWS_PRE LWS_SEND_BUFFER_PRE_PADDING

#define LWS_SERVER_OPTION_REQUIRE_VALID_OPENSSL_CLIENT_CERT (1 << 1)
#define LWS_SERVER_OPTION_ALLOW_NON_SSL_ON_SSL_PORT (1 << 3)
/* ours: the program polls the descriptors reported by the *_POLL_FD reasons */
#define LWS_SERVER_OPTION_EXTERNAL_POLL (1 << 24)

enum libwebsocket_callback_reasons {
	LWS_CALLBACK_ESTABLISHED = 0,
	LWS_CALLBACK_CLIENT_CONNECTION_ERROR = 1,
	LWS_CALLBACK_CLIENT_FILTER_PRE_ESTABLISH = 2,
	LWS_CALLBACK_CLIENT_ESTABLISHED = 3,
	LWS_CALLBACK_CLOSED = 4,
	LWS_CALLBACK_CLOSED_HTTP = 5,
	LWS_CALLBACK_RECEIVE = 6,
	LWS_CALLBACK_CLIENT_RECEIVE = 7,
	LWS_CALLBACK_CLIENT_RECEIVE_PONG = 8,
	LWS_CALLBACK_CLIENT_WRITEABLE = 9,
	LWS_CALLBACK_SERVER_WRITEABLE = 10,
	LWS_CALLBACK_HTTP = 11,
	LWS_CALLBACK_HTTP_BODY = 12,
	LWS_CALLBACK_HTTP_BODY_COMPLETION = 13,
	LWS_CALLBACK_HTTP_FILE_COMPLETION = 14,
	LWS_CALLBACK_HTTP_WRITEABLE = 15,
	LWS_CALLBACK_FILTER_NETWORK_CONNECTION = 16,
	LWS_CALLBACK_FILTER_HTTP_CONNECTION = 17,
	LWS_CALLBACK_SERVER_NEW_CLIENT_INSTANTIATED = 18,
	LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION = 19,
	LWS_CALLBACK_OPENSSL_LOAD_EXTRA_CLIENT_VERIFY_CERTS = 20, /* never sent */
	LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS = 21, /* never sent */
	LWS_CALLBACK_OPENSSL_PERFORM_CLIENT_CERT_VERIFICATION = 22,
	LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER = 23,         /* never sent */
	LWS_CALLBACK_CONFIRM_EXTENSION_OKAY = 24,                 /* never sent */
	LWS_CALLBACK_CLIENT_CONFIRM_EXTENSION_SUPPORTED = 25,     /* never sent */
	LWS_CALLBACK_PROTOCOL_INIT = 26,
	LWS_CALLBACK_PROTOCOL_DESTROY = 27,
	LWS_CALLBACK_WSI_CREATE = 28,
	LWS_CALLBACK_WSI_DESTROY = 29,
	LWS_CALLBACK_GET_THREAD_ID = 30,                          /* never sent */
	LWS_CALLBACK_ADD_POLL_FD = 31,
	LWS_CALLBACK_DEL_POLL_FD = 32,
	LWS_CALLBACK_CHANGE_MODE_POLL_FD = 33,
	LWS_CALLBACK_LOCK_POLL = 34,
	LWS_CALLBACK_UNLOCK_POLL = 35,
	LWS_CALLBACK_USER = 1000
};

enum libwebsocket_write_protocol {
	LWS_WRITE_TEXT = 0,
	LWS_WRITE_BINARY = 1,
	LWS_WRITE_CONTINUATION = 2,
	LWS_WRITE_HTTP = 3,
	LWS_WRITE_CLOSE = 4,
	LWS_WRITE_PING = 5,
	LWS_WRITE_PONG = 6,
	LWS_WRITE_NO_FIN = 0x40,
	LWS_WRITE_CLIENT_IGNORE_XOR_MASK = 0x80 /* ignored */
};

struct libwebsocket;          /* a handle */
struct libwebsocket_context;

typedef int (callback_function)(struct libwebsocket_context *context,
	struct libwebsocket *wsi, enum libwebsocket_callback_reasons reason,
	void *user, void *in, size_t len);

struct libwebsocket_protocols {
	const char *name;
	callback_function *callback;
	size_t per_session_data_size;
	size_t rx_buffer_size;
	unsigned int id;
	struct libwebsocket_context *owning_server; /* filled in */
	int protocol_index;                         /* filled in */
};

struct libwebsocket_extension; /* unsupported: pass NULL */
struct lws_token_limits;       /* ignored */

struct lws_context_creation_info {
	int port;
	const char *iface;
	struct libwebsocket_protocols *protocols;
	struct libwebsocket_extension *extensions;
	struct lws_token_limits *token_limits;
	const char *ssl_cert_filepath;
	const char *ssl_private_key_filepath;
	const char *ssl_ca_filepath;
	const char *ssl_cipher_list;
	int gid;
	int uid;
	unsigned int options;
	void *user;
	int ka_time;
	int ka_probes;
	int ka_interval;
	void *provided_client_ssl_ctx; /* ignored */
};

/* The `in` of LWS_CALLBACK_ADD_POLL_FD / DEL_POLL_FD / CHANGE_MODE_POLL_FD (wsi NULL). */
struct libwebsocket_pollargs {
	int fd;
	int events;
	int prev_events;
};

/* Same layout as struct pollfd. */
struct libwebsocket_pollfd {
	int fd;
	short events;
	short revents;
};

LWS_EXTERN struct libwebsocket_context *
libwebsocket_create_context(struct lws_context_creation_info *info);
LWS_EXTERN void libwebsocket_context_destroy(struct libwebsocket_context *context);
LWS_EXTERN int libwebsocket_service(struct libwebsocket_context *context, int timeout_ms);
LWS_EXTERN int libwebsocket_service_fd(struct libwebsocket_context *context,
	struct libwebsocket_pollfd *pollfd);
LWS_EXTERN void libwebsocket_cancel_service(struct libwebsocket_context *context);
LWS_EXTERN void *libwebsocket_context_user(struct libwebsocket_context *context);
LWS_EXTERN const char *libwebsocket_canonical_hostname(struct libwebsocket_context *context);
LWS_EXTERN const char *lws_get_library_version(void);

LWS_EXTERN int libwebsocket_write(struct libwebsocket *wsi, unsigned char *buf, size_t len,
	enum libwebsocket_write_protocol protocol);
LWS_EXTERN int libwebsocket_callback_on_writable(struct libwebsocket_context *context,
	struct libwebsocket *wsi);
LWS_EXTERN int libwebsocket_callback_on_writable_all_protocol(
	const struct libwebsocket_protocols *protocol);
LWS_EXTERN int libwebsocket_callback_all_protocol(
	const struct libwebsocket_protocols *protocol, int reason);
LWS_EXTERN int libwebsocket_rx_flow_control(struct libwebsocket *wsi, int enable);
LWS_EXTERN void libwebsocket_rx_flow_allow_all_protocol(
	const struct libwebsocket_protocols *protocol);

LWS_EXTERN size_t libwebsockets_remaining_packet_payload(struct libwebsocket *wsi);
LWS_EXTERN int lws_frame_is_binary(struct libwebsocket *wsi);
LWS_EXTERN int libwebsocket_is_final_fragment(struct libwebsocket *wsi);
LWS_EXTERN int lws_is_final_fragment(struct libwebsocket *wsi);
LWS_EXTERN int lws_partial_buffered(struct libwebsocket *wsi);
LWS_EXTERN int lws_is_ssl(struct libwebsocket *wsi);
LWS_EXTERN int libwebsocket_get_socket_fd(struct libwebsocket *wsi);
LWS_EXTERN const struct libwebsocket_protocols *libwebsockets_get_protocol(struct libwebsocket *wsi);

LWS_EXTERN void libwebsockets_get_peer_addresses(struct libwebsocket_context *context,
	struct libwebsocket *wsi, int fd, char *name, int name_len, char *rip, int rip_len);
LWS_EXTERN int libwebsockets_return_http_status(struct libwebsocket_context *context,
	struct libwebsocket *wsi, unsigned int code, const char *html_body);
LWS_EXTERN int libwebsockets_serve_http_file(struct libwebsocket_context *context,
	struct libwebsocket *wsi, const char *file, const char *content_type,
	const char *other_headers, int other_headers_len);

#ifdef __cplusplus
}
#endif

#endif /* LIBWEBSOCKETS_H */
