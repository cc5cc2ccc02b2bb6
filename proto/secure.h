/* Link security for every ZeroMQ socket: CURVE encryption (each side has a
 * key pair; clients and workers know the broker's public key) and ZAP
 * authentication on the broker (a peer is let in only when its public key
 * is in the allow-list folder). The broker, the worker runtime and the
 * client library all set their sockets up through this one module.
 *
 * Key files (written by narrator-keygen, the secret one with mode 0600):
 *   NAME.key   public-key = <40 Z85 characters>
 *              secret-key = <40 Z85 characters>
 *   NAME.pub   public-key = <40 Z85 characters>
 * Lines starting with '#' are comments. The allow-list folder holds one
 * NAME.pub per allowed client or worker; it is read again for every new
 * connection, so adding or removing a file takes effect without a restart.
 *
 * Everything returns 0 or a negative NR_E* code with the detail in err. */
#ifndef NR_PROTO_SECURE_H
#define NR_PROTO_SECURE_H

#include <stddef.h>

#define NR_SECURE_KEY_Z85 40 /* characters of a Z85-encoded 32-byte key */

/* Settings as programs hold them (file < env < flags); all "" = no CURVE. */
typedef struct {
    char secret_key_file[512]; /* this side's NAME.key */
    char server_key[512];      /* client/worker: broker's public key, Z85 text or a .pub path */
    char allow_dir[512];       /* broker: folder of allowed NAME.pub files */
} nr_secure_settings_t;

/* 1 when this libzmq can do CURVE. */
int nr_secure_available(void);

/* A new key pair as Z85 text (NUL-terminated). 0, NR_EUNSUPPORTED, NR_EIO. */
int nr_secure_keypair(char public_z85[NR_SECURE_KEY_Z85 + 1], char secret_z85[NR_SECURE_KEY_Z85 + 1]);

/* Writes NAME.key (mode 0600, both keys) and NAME.pub next to it (`base`
 * is the path without the extension). Refuses to overwrite (NR_ESTATE). */
int nr_secure_write_keypair(const char *base, const char *public_z85, const char *secret_z85, char *err,
                            size_t errlen);

/* Reads a NAME.key file: both keys, checked to be a pair. secret_z85 may
 * be NULL. NR_EIO (unreadable), NR_EINVAL (malformed, not a pair). A key
 * file readable by group or others is refused (NR_EINVAL). */
int nr_secure_read_keyfile(const char *path, char public_z85[NR_SECURE_KEY_Z85 + 1],
                           char secret_z85[NR_SECURE_KEY_Z85 + 1], char *err, size_t errlen);

/* A public key given as Z85 text itself or as a path to a .pub/.key file. */
int nr_secure_read_public(const char *key_or_path, char public_z85[NR_SECURE_KEY_Z85 + 1], char *err,
                          size_t errlen);

/* 1 when the settings ask for CURVE on this side: a server needs both
 * secret_key_file and allow_dir, a client secret_key_file and server_key;
 * 0 when all are empty; NR_EINVAL (with the reason) when only some are set. */
int nr_secure_enabled(const nr_secure_settings_t *settings, int server, char *err, size_t errlen);

/* Broker side: makes `socket` a CURVE server with the secret key of
 * settings->secret_key_file. Call before zmq_bind. */
int nr_secure_server(void *socket, const nr_secure_settings_t *settings, char *err, size_t errlen);

/* Client/worker side: CURVE client with its own key pair and the broker's
 * public key. Call before zmq_connect (again for every new socket). */
int nr_secure_client(void *socket, const nr_secure_settings_t *settings, char *err, size_t errlen);

/* The ZAP handler: a thread on `zmq_ctx` that answers the ZeroMQ
 * authentication requests of every CURVE server socket in that context.
 * A peer whose public key has a NAME.pub in allow_dir is accepted (its
 * user id is NAME); any other is refused and logged at warn level with its
 * key and address. Create it before binding the sockets; destroy it before
 * zmq_ctx_term. */
typedef struct nr_secure_zap nr_secure_zap_t;
nr_secure_zap_t *nr_secure_zap_new(void *zmq_ctx, const char *allow_dir, char *err, size_t errlen);
/* Counts since start: accepted and refused handshakes. */
void nr_secure_zap_counts(nr_secure_zap_t *self, long *accepted, long *refused);
void nr_secure_zap_destroy(nr_secure_zap_t **self_p);

#endif
