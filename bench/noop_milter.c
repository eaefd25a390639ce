/* The floor under any libmilter milter with tmail's shape (bench only):
 * CONNECT, HELO and MAIL FROM not awaited, RCPT answered CONTINUE, DATA
 * answered ACCEPT, nothing more of the message asked for. No work at all,
 * so what it costs Postfix's acceptance is libmilter's and the protocol's.
 *
 *     cc -O2 -o noop_milter noop_milter.c -lmilter -lpthread
 *     ./noop_milter unix:/path/to/socket
 */
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <libmilter/mfapi.h>

static sfsistat noop(SMFICTX *ctx) { (void) ctx; return SMFIS_CONTINUE; }
static sfsistat noop_connect(SMFICTX *ctx, char *host, _SOCK_ADDR *addr)
{ (void) ctx; (void) host; (void) addr; return SMFIS_NOREPLY; }
static sfsistat noop_helo(SMFICTX *ctx, char *helo) { (void) ctx; (void) helo; return SMFIS_NOREPLY; }
static sfsistat noop_mail(SMFICTX *ctx, char **argv) { (void) ctx; (void) argv; return SMFIS_NOREPLY; }
static sfsistat noop_rcpt(SMFICTX *ctx, char **argv) { (void) ctx; (void) argv; return SMFIS_CONTINUE; }
static sfsistat noop_data(SMFICTX *ctx) { (void) ctx; return SMFIS_ACCEPT; }

static sfsistat negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1, unsigned long f2,
                          unsigned long f3, unsigned long *pf0, unsigned long *pf1,
                          unsigned long *pf2, unsigned long *pf3)
{
    (void) ctx; (void) f0; (void) f2; (void) f3;
    *pf0 = 0;
    *pf1 = f1 & (SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL | SMFIP_NOUNKNOWN);
    *pf2 = *pf3 = 0;
    return SMFIS_CONTINUE;
}

static struct smfiDesc desc = {
    "noop", SMFI_VERSION, 0,
    noop_connect, noop_helo, noop_mail, noop_rcpt, NULL, NULL, NULL, noop, noop, noop,
    NULL, noop_data, negotiate,
};

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s unix:/path/to/socket\n", argv[0]);
        return 2;
    }
    if (smfi_setconn(argv[1]) == MI_FAILURE || smfi_register(desc) == MI_FAILURE
        || smfi_setbacklog(256) == MI_FAILURE || smfi_opensocket(1) == MI_FAILURE)
        return 1;
    return smfi_main() == MI_SUCCESS ? 0 : 1;
}
