/* narrator-keygen: makes a CURVE key pair for a narrator broker, worker or
 * client (zmq_curve_keypair) and writes NAME.key (both keys, mode 0600) and
 * NAME.pub (the public key, to copy into the broker's --curve-allow-dir or
 * to give to clients and workers as --curve-server-key). */
#include "common/error.h"
#include "proto/secure.h"

#include <stdio.h>
#include <string.h>

static void s_usage(FILE *out) {
    fprintf(out,
            "usage: narrator-keygen NAME     write NAME.key (secret, mode 0600) and NAME.pub\n"
            "       narrator-keygen --print  print a new pair on stdout, write nothing\n"
            "\n"
            "Makes a CURVE key pair for narrator's encrypted, authenticated links.\n"
            "  broker:          narrator-keygen broker; run narrator-broker with\n"
            "                   --curve-secret-key-file broker.key --curve-allow-dir DIR\n"
            "  worker / client: narrator-keygen worker1; copy worker1.pub into DIR; run with\n"
            "                   --curve-secret-key-file worker1.key --curve-server-key broker.pub\n"
            "Existing files are never overwritten. Exit 0 ok, 1 failure, 2 usage.\n");
}

int main(int argc, char **argv) {
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        s_usage(stdout);
        return 0;
    }
    if (argc != 2 || !argv[1][0] || (argv[1][0] == '-' && strcmp(argv[1], "--print") != 0)) {
        s_usage(stderr);
        return 2;
    }
    char pub[NR_SECURE_KEY_Z85 + 1], sec[NR_SECURE_KEY_Z85 + 1], err[512];
    int rc = nr_secure_keypair(pub, sec);
    if (rc) {
        fprintf(stderr, "narrator-keygen: %s\n",
                rc == NR_EUNSUPPORTED ? "this libzmq was built without CURVE" : "zmq_curve_keypair failed");
        return 1;
    }
    if (!strcmp(argv[1], "--print")) {
        printf("public-key = %s\nsecret-key = %s\n", pub, sec);
        return 0;
    }
    rc = nr_secure_write_keypair(argv[1], pub, sec, err, sizeof err);
    memset(sec, 0, sizeof sec);
    if (rc) {
        fprintf(stderr, "narrator-keygen: %s\n", err);
        return 1;
    }
    printf("wrote %s.key (secret) and %s.pub\npublic-key = %s\n", argv[1], argv[1], pub);
    return 0;
}
