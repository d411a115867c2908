/* One login's account phase in a fresh C process, as sshd and login do it:
 * pam_start_confdir + pam_acct_mgmt + pam_end, timed; prints
 * "MICROSECONDS CODE". Used by `pam_login_bench cold` (bench/pam-login.sh)
 * instead of the Rust harness itself, because a Rust process has already
 * loaded libgcc_s (Rust's unwinder), which sshd and login have not: a module
 * that needs it pays for loading it in a real login.
 *
 *   pam-once CONFDIR SERVICE USER
 */
#include <security/pam_appl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static int conversation(int n, const struct pam_message **msg,
                        struct pam_response **resp, void *data) {
    (void)msg;
    (void)data;
    *resp = calloc((size_t)n, sizeof **resp);
    return *resp ? PAM_SUCCESS : PAM_BUF_ERR;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: pam-once CONFDIR SERVICE USER\n");
        return 2;
    }
    struct pam_conv conv = {conversation, NULL};
    pam_handle_t *pamh = NULL;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    int rc = pam_start_confdir(argv[2], argv[3], &conv, argv[1], &pamh);
    if (rc == PAM_SUCCESS) {
        rc = pam_acct_mgmt(pamh, 0);
        pam_end(pamh, rc);
    } else {
        rc += 1000;
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    long micros = (b.tv_sec - a.tv_sec) * 1000000L + (b.tv_nsec - a.tv_nsec) / 1000L;
    printf("%ld %d\n", micros, rc);
    return 0;
}
