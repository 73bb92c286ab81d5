/*
 * An echo server on the wsServer API, as wsServer's own example: every message back to
 * its sender. Build: gcc -Iwsreactor-c/include echo.c -Ltarget/release -lwsreactor_c
 * Usage: echo [port] (default 8080). Prints "listening" once, then nothing per message.
 */
#include <stdio.h>
#include <stdlib.h>
#include <ws.h>

static int verbose;

void onopen(ws_cli_conn_t *client)
{
	if (verbose)
		printf("Connection opened, addr: %s\n", ws_getaddress(client));
}

void onclose(ws_cli_conn_t *client)
{
	if (verbose)
		printf("Connection closed, addr: %s\n", ws_getaddress(client));
}

void onmessage(ws_cli_conn_t *client,
	const unsigned char *msg, uint64_t size, int type)
{
	ws_sendframe(client, (const char *)msg, size, type);
}

int main(int argc, char **argv)
{
	struct ws_events evs;
	uint16_t port = argc > 1 ? (uint16_t)atoi(argv[1]) : 8080;
	verbose = getenv("ECHO_VERBOSE") != NULL;
	evs.onopen    = &onopen;
	evs.onclose   = &onclose;
	evs.onmessage = &onmessage;
	fprintf(stderr, "echo: serving port %u\n", port);
	ws_socket(&evs, port, 0, 1000); /* blocks */
	return 1;
}
