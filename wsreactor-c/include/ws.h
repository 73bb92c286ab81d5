/*
 * ws.h: the wsServer API, served by wsreactor (libwsreactor_c).
 *
 * A program written for wsServer's ws_socket(evs, port, thread_loop, timeout_ms) API
 * compiles unchanged against this header and links with -lwsreactor_c instead of
 * libws.a. Differences from wsServer, all documented in the README:
 *  - no client limit (MAX_CLIENTS is kept for source compatibility only);
 *  - a ws_cli_conn_t * is a generation-checked handle, not memory: a handle of a closed
 *    client gets -1 / NULL from every function, never another client;
 *  - every function may be called from any thread; sends from outside the client's own
 *    callbacks are queued to the loop and return the message length once queued;
 *  - ws_getaddress() returns a per-thread buffer, valid until the thread's next call.
 * Hand-written; wsreactor-c/tests/check-headers.sh checks it against the library's
 * exported symbols.
 */
#ifndef WS_H
#define WS_H

#include <stdint.h>
#include <inttypes.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Kept for wsServer source compatibility; wsreactor has no such limits. */
#define MAX_CLIENTS    8
#define MESSAGE_LENGTH 2048
#define MAX_FRAME_LENGTH (16*1024*1024)

#define WS_KEY_LEN     24
#define WS_MS_LEN      36
#define WS_KEYMS_LEN   (WS_KEY_LEN + WS_MS_LEN)
#define MAGIC_STRING   "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

#define WS_HS_REQ      "Sec-WebSocket-Key"

#define WS_FIN       128
#define WS_FIN_SHIFT 7

/* Frame types. */
#define WS_FR_OP_CONT 0
#define WS_FR_OP_TXT  1
#define WS_FR_OP_BIN  2
#define WS_FR_OP_CLSE 8
#define WS_FR_OP_PING 0x9
#define WS_FR_OP_PONG 0xA
#define WS_FR_OP_UNSUPPORTED 0xF

/* Close codes. */
#define WS_CLSE_NORMAL  1000
#define WS_CLSE_PROTERR 1002
#define WS_CLSE_INVUTF8 1007

/* Client states (ws_get_state). */
#define WS_STATE_CONNECTING 0
#define WS_STATE_OPEN       1
#define WS_STATE_CLOSING    2
#define WS_STATE_CLOSED     3

#define MAX_CONTROL_FRAME_PAYLOAD 125

/* A client; only pointers to it exist (handles). */
typedef struct ws_connection ws_cli_conn_t;

/* Events, called on the server loop's thread. */
struct ws_events
{
	/* void onopen(ws_cli_conn_t *client); */
	void (*onopen)(ws_cli_conn_t *client);

	/* void onclose(ws_cli_conn_t *client); */
	void (*onclose)(ws_cli_conn_t *client);

	/* void onmessage(ws_cli_conn_t *client, const unsigned char *msg,
	 *     uint64_t msg_size, int type); msg is a whole message, NUL-terminated,
	 *     valid during the call; type is WS_FR_OP_TXT or WS_FR_OP_BIN. */
	void (*onmessage)(ws_cli_conn_t *client,
		const unsigned char *msg, uint64_t msg_size, int type);
};

extern char *ws_getaddress(ws_cli_conn_t *client);
extern int   ws_sendframe(ws_cli_conn_t *cli, const char *msg, uint64_t size, int type);
extern int   ws_sendframe_txt(ws_cli_conn_t *cli, const char *msg);
extern int   ws_sendframe_bin(ws_cli_conn_t *cli, const char *msg, uint64_t size);
extern int   ws_get_state(ws_cli_conn_t *cli);
extern int   ws_close_client(ws_cli_conn_t *cli);
extern int   ws_socket(struct ws_events *evs, uint16_t port, int thread_loop,
	uint32_t timeout_ms);
extern void  ws_ping(ws_cli_conn_t *cli, int threshold);

/* The symbols the Chibi Scheme binding's library adds. */
extern int   ws_start(void);                  /* waits for the thread_loop = 1 loops */
extern int   ws_get_fd(ws_cli_conn_t *cli);   /* the client's socket, -1 if none */
extern int   ws_get_connections(void);        /* open clients of all servers */

/* wsreactor's own: the bound on bytes queued from outside a client's callbacks. */
extern int   ws_set_max_queued(uint64_t bytes);

#ifdef __cplusplus
}
#endif

#endif /* WS_H */
