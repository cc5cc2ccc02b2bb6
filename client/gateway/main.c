/* narrator-gateway: settings and signals around the HTTP gateway in
 * gateway.c. Serves until SIGTERM or SIGINT, then closes every connection
 * and exits 0. */
#include "client/gateway/gateway.h"
#include "common/config.h"
#include "common/error.h"
#include "common/log.h"
#include "proto/proto.h"

#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define S_ENV_PREFIX "NARRATOR_GATEWAY_"

#ifndef NR_GATEWAY_STATIC_DIR
#define NR_GATEWAY_STATIC_DIR ""
#endif

typedef struct {
    char listen_address[NR_GATEWAY_ADDRESS_MAX];
    long port;
    char broker[NR_GATEWAY_ENDPOINT_MAX];
    long max_body_bytes;
    long request_timeout_ms;
    long connection_timeout_s;
    char static_dir[NR_GATEWAY_PATH_MAX];
    long threads;
    long max_connections;
    long recent_jobs;
    char log_level[16];
    char curve_server_key[NR_GATEWAY_KEY_MAX];
    char curve_secret_key_file[NR_GATEWAY_KEY_MAX];
    long client_rate;
    long client_burst;
    char allowed_hosts[NR_GATEWAY_LIST_MAX];
    char allowed_origins[NR_GATEWAY_LIST_MAX];
    long head_timeout_s;
    long max_buffered_bytes;
} s_settings_t;

#define S_OPT(...) NR_CONFIG_OPT(s_settings_t, __VA_ARGS__)

static const nr_config_option_t s_options[] = {
    S_OPT("listen-address", NR_CONFIG_STRING, 0, 0, "127.0.0.1", listen_address,
          "numeric IPv4 or IPv6 address to listen on (0.0.0.0 or :: for every interface)"),
    S_OPT("port", NR_CONFIG_INT, 0, 65535, "8080", port, "TCP port to listen on (0: any free port)"),
    S_OPT("broker", NR_CONFIG_STRING, 0, 0, "tcp://127.0.0.1:5555", broker,
          "narrator-broker client endpoint"),
    S_OPT("max-body-bytes", NR_CONFIG_INT, 1024, (long)NR_PROTO_PAYLOAD_MAX, "20971520",
          max_body_bytes, "largest request body (image or text); larger gets 413"),
    S_OPT("max-buffered-bytes", NR_CONFIG_INT, 1024, 1L << 40, "67108864", max_buffered_bytes,
          "request body bytes held by all connections together (at least max-body-bytes); a body "
          "that does not fit gets 503 busy with Retry-After"),
    S_OPT("request-timeout-ms", NR_CONFIG_INT, 100, 600000, "5000", request_timeout_ms,
          "how long one broker request may take before 503 (unreachable) or 504 (no answer)"),
    S_OPT("connection-timeout-s", NR_CONFIG_INT, 0, 86400, "30", connection_timeout_s,
          "idle HTTP connections are closed after this (0: never)"),
    S_OPT("head-timeout-s", NR_CONFIG_INT, 0, 86400, "10", head_timeout_s,
          "a request's line and headers must all arrive within this, from the connection (or the "
          "previous answer), however slowly they trickle; else the connection is closed (0: no limit)"),
    S_OPT("allowed-hosts", NR_CONFIG_STRING, 0, 0, "", allowed_hosts,
          "Host header values served, comma-separated (name, name:port, [v6]:port, *); \"\": "
          "localhost, 127.0.0.1, [::1] and listen-address with the port (any IP address when "
          "listening on all); others get 403"),
    S_OPT("allowed-origins", NR_CONFIG_STRING, 0, 0, "", allowed_origins,
          "Origin values taken besides the gateway's own (scheme://host[:port], comma-separated, "
          "or *); other cross-origin requests get 403"),
    S_OPT("static-dir", NR_CONFIG_STRING, 0, 0, NR_GATEWAY_STATIC_DIR, static_dir,
          "folder of the web page served at / (\"\": no page)"),
    S_OPT("threads", NR_CONFIG_INT, 1, 256, "4", threads,
          "HTTP threads, each with its own broker connection"),
    S_OPT("max-connections", NR_CONFIG_INT, 1, 100000, "256", max_connections,
          "open HTTP connections at most"),
    S_OPT("recent-jobs", NR_CONFIG_INT, 1, 1000000, "200", recent_jobs,
          "jobs GET /v1/jobs remembers (in memory, newest first)"),
    S_OPT("log-level", NR_CONFIG_STRING, 0, 0, "info", log_level, "error, warn, info or debug"),
    /* The same settings, help and meaning as narrate's (client/cli.c). */
    S_OPT("curve-server-key", NR_CONFIG_STRING, 0, 0, "", curve_server_key,
          "CURVE: the broker's public key (Z85 or .pub file)"),
    S_OPT("curve-secret-key-file", NR_CONFIG_STRING, 0, 0, "", curve_secret_key_file,
          "CURVE: this client's key file (narrator-keygen)"),
    S_OPT("client-rate", NR_CONFIG_INT, 0, 1000000, "0", client_rate,
          "new jobs per second per client IP (POST), after client-burst; over it 429; 0: no limit"),
    S_OPT("client-burst", NR_CONFIG_INT, 1, 1000000, "20", client_burst,
          "new jobs a client IP may send at once before client-rate applies"),
    NR_CONFIG_END,
};

int main(int argc, char **argv) {
    nr_log_set_component("gateway");
    s_settings_t st;
    memset(&st, 0, sizeof st);
    char err[1024];
    int rc = nr_config_start(
        s_options, &st, S_ENV_PREFIX, argc, argv, "narrator-gateway",
        "Usage: narrator-gateway [options]\n"
        "HTTP/JSON gateway to narrator-broker and the web page (see client/gateway/API.md).\n"
        "Settings come from --config FILE, then " S_ENV_PREFIX "* variables, then flags.\n\n");
    if (rc == 1) return 0;
    if (rc) return 2;
    if (nr_log_set_level(st.log_level)) {
        fprintf(stderr, "narrator-gateway: log-level must be error, warn, info or debug\n");
        return 2;
    }

    nr_gateway_params_t gp;
    nr_gateway_default_params(&gp);
    snprintf(gp.listen_address, sizeof gp.listen_address, "%s", st.listen_address);
    gp.port = (int)st.port;
    snprintf(gp.broker_endpoint, sizeof gp.broker_endpoint, "%s", st.broker);
    gp.max_body_bytes = (size_t)st.max_body_bytes;
    gp.request_timeout_ms = (int)st.request_timeout_ms;
    gp.connection_timeout_s = (int)st.connection_timeout_s;
    snprintf(gp.static_dir, sizeof gp.static_dir, "%s", st.static_dir);
    /* The built-in default is the source tree's page; an installed binary
     * without it serves the API alone (a static-dir given explicitly must
     * exist, and nr_gateway_new says so). */
    struct stat sb;
    if (gp.static_dir[0] && !strcmp(gp.static_dir, NR_GATEWAY_STATIC_DIR) &&
        (stat(gp.static_dir, &sb) != 0 || !S_ISDIR(sb.st_mode))) {
        nr_log(NR_LOG_WARN, "no web page: the default static-dir %s is missing (set static-dir)",
               gp.static_dir);
        gp.static_dir[0] = '\0';
    }
    gp.threads = (int)st.threads;
    gp.max_connections = (int)st.max_connections;
    gp.recent_jobs = (int)st.recent_jobs;
    gp.client_rate = (int)st.client_rate;
    gp.client_burst = (int)st.client_burst;
    gp.head_timeout_s = (int)st.head_timeout_s;
    gp.max_buffered_bytes = (size_t)st.max_buffered_bytes;
    snprintf(gp.allowed_hosts, sizeof gp.allowed_hosts, "%s", st.allowed_hosts);
    snprintf(gp.allowed_origins, sizeof gp.allowed_origins, "%s", st.allowed_origins);
    snprintf(gp.curve_server_key, sizeof gp.curve_server_key, "%s", st.curve_server_key);
    snprintf(gp.curve_secret_key_file, sizeof gp.curve_secret_key_file, "%s", st.curve_secret_key_file);
    /* Bad settings (a CURVE key that does not read, one CURVE setting
     * without the other) are usage errors, like a bad flag: exit 2. */
    if (nr_gateway_check_params(&gp, err, sizeof err)) {
        fprintf(stderr, "narrator-gateway: %s\n", err);
        return 2;
    }

    /* Block the stop signals before any thread starts, so that only
     * sigwait below receives them. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    nr_gateway_t *gw = nr_gateway_new(&gp, err, sizeof err);
    if (!gw) {
        nr_log(NR_LOG_ERROR, "%s", err);
        return 1;
    }
    nr_log(NR_LOG_INFO, "listening on http://%s%s%s:%d/ (broker %s, %d threads, max body %zu bytes%s%s)",
           strchr(gp.listen_address, ':') ? "[" : "", gp.listen_address,
           strchr(gp.listen_address, ':') ? "]" : "", nr_gateway_port(gw), gp.broker_endpoint,
           gp.threads, gp.max_body_bytes, gp.static_dir[0] ? ", page from " : ", no web page",
           gp.static_dir);
    int sig = 0;
    while (sigwait(&stop, &sig) != 0) {}
    nr_log(NR_LOG_INFO, "%s: closing connections and stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    nr_gateway_destroy(&gw);
    nr_log(NR_LOG_INFO, "stopped");
    return 0;
}
