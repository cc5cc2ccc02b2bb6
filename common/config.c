/* Table-driven settings: defaults < config file < environment < flags. */
#include "common/config.h"
#include "common/error.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A config file is a few hundred bytes; past this it is not one. */
#define S_FILE_MAX ((off_t)1 << 20)

static const nr_config_option_t *s_find(const nr_config_option_t *table, const char *name,
                                        size_t len) {
    for (const nr_config_option_t *o = table; o->name; o++)
        if (strlen(o->name) == len && strncmp(o->name, name, len) == 0) return o;
    return NULL;
}

/* Stores `value` into the field of `o`; `origin` names where it came from
 * (a file line, an environment variable, or the flag itself, "--name":
 * then the message starts with the flag alone). */
static int s_set(const nr_config_option_t *o, void *settings, const char *value,
                 const char *origin, char *err, size_t errlen) {
    char *field = (char *)settings + o->offset;
    const int flag = !strncmp(origin, "--", 2);
    switch (o->type) {
    case NR_CONFIG_INT: {
        char *end;
        errno = 0;
        long v = strtol(value, &end, 10);
        if (errno || end == value || *end != '\0')
            return flag ? nr_seterr(err, errlen, NR_EINVAL, "%s needs a whole number, got '%s'",
                                    origin, value)
                        : nr_seterr(err, errlen, NR_EINVAL, "%s: %s must be an integer, got '%s'",
                                    origin, o->name, value);
        if (v < o->min || v > o->max)
            return flag ? nr_seterr(err, errlen, NR_EINVAL, "%s must be in %ld..%ld, got %ld", origin,
                                    o->min, o->max, v)
                        : nr_seterr(err, errlen, NR_EINVAL, "%s: %s must be in %ld..%ld, got %ld",
                                    origin, o->name, o->min, o->max, v);
        *(long *)field = v;
        return 0;
    }
    case NR_CONFIG_BOOL:
        if (!strcmp(value, "1") || !strcmp(value, "true") || !strcmp(value, "yes") ||
            !strcmp(value, "on")) {
            *(int *)field = 1;
        } else if (!strcmp(value, "0") || !strcmp(value, "false") || !strcmp(value, "no") ||
                   !strcmp(value, "off")) {
            *(int *)field = 0;
        } else if (flag) {
            return nr_seterr(err, errlen, NR_EINVAL, "%s must be true or false, got '%s'", origin,
                             value);
        } else {
            return nr_seterr(err, errlen, NR_EINVAL, "%s: %s must be true or false, got '%s'",
                             origin, o->name, value);
        }
        return 0;
    case NR_CONFIG_STRING:
        if (strlen(value) >= o->size && flag)
            return nr_seterr(err, errlen, NR_EINVAL, "%s is too long (at most %zu bytes)", origin,
                             o->size - 1);
        if (strlen(value) >= o->size)
            return nr_seterr(err, errlen, NR_EINVAL, "%s: %s is longer than %zu bytes", origin,
                             o->name, o->size - 1);
        memcpy(field, value, strlen(value) + 1);
        return 0;
    }
    return NR_EINVAL;
}

static void s_env_name(char *out, size_t size, const char *prefix, const char *name) {
    size_t n = (size_t)snprintf(out, size, "%s", prefix);
    for (; *name && n + 1 < size; name++, n++)
        out[n] = *name == '-' ? '_' : (char)toupper((unsigned char)*name);
    out[n < size ? n : size - 1] = '\0';
}

static char *s_trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = '\0';
    return s;
}

static int s_load_file(const nr_config_option_t *table, void *settings, const char *path,
                       char *err, size_t errlen) {
    /* O_NONBLOCK: opening a FIFO must not wait for a writer (it is then
     * refused below, as is a device such as /dev/zero that never ends). */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return nr_seterr(err, errlen, NR_EINVAL, "cannot open config file %s: %s", path,
                         strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return nr_seterr(err, errlen, NR_EINVAL,
                         "config file %s is not a regular file (a device, FIFO or folder)", path);
    }
    if (st.st_size > S_FILE_MAX) {
        close(fd);
        return nr_seterr(err, errlen, NR_EINVAL, "config file %s is larger than %lld bytes", path,
                         (long long)S_FILE_MAX);
    }
    FILE *f = fdopen(fd, "r");
    if (!f) {
        close(fd);
        return nr_seterr(err, errlen, NR_ENOMEM, "cannot read config file %s: %s", path,
                         strerror(errno));
    }
    char line[4096], origin[512];
    int lineno = 0, rc = 0;
    off_t total = 0;
    while (rc == 0 && fgets(line, sizeof line, f)) {
        lineno++;
        total += (off_t)strlen(line);
        if (total > S_FILE_MAX) { /* it grew while being read */
            rc = nr_seterr(err, errlen, NR_EINVAL, "config file %s is larger than %lld bytes", path,
                           (long long)S_FILE_MAX);
            break;
        }
        char *s = s_trim(line);
        if (*s == '\0' || *s == '#') continue;
        char *eq = strchr(s, '=');
        snprintf(origin, sizeof origin, "%s:%d", path, lineno);
        if (!eq) {
            rc = nr_seterr(err, errlen, NR_EINVAL, "%s: expected 'name = value'", origin);
            break;
        }
        *eq = '\0';
        char *key = s_trim(s), *value = s_trim(eq + 1);
        const nr_config_option_t *o = s_find(table, key, strlen(key));
        if (!o)
            rc = nr_seterr(err, errlen, NR_EINVAL, "%s: unknown setting '%s'", origin, key);
        else
            rc = s_set(o, settings, value, origin, err, errlen);
    }
    fclose(f);
    return rc;
}

int nr_config_flag(const nr_config_option_t *table, void *settings, int argc, char **argv, int *i,
                   char *err, size_t errlen) {
    const char *arg = argv[*i];
    if (arg[0] != '-' || arg[1] != '-' || !arg[2]) return 0;
    const char *name = arg + 2, *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    const nr_config_option_t *o = s_find(table, name, len);
    if (!o) {
        /* --no-NAME turns a boolean off. */
        if (len > 3 && !strncmp(name, "no-", 3) && !eq) {
            o = s_find(table, name + 3, len - 3);
            if (o && o->type == NR_CONFIG_BOOL) {
                *(int *)((char *)settings + o->offset) = 0;
                return 1;
            }
        }
        return 0;
    }
    const char *value;
    if (eq) value = eq + 1;
    else if (o->type == NR_CONFIG_BOOL) value = "true";
    else if (*i + 1 < argc) value = argv[++*i];
    else return nr_seterr(err, errlen, NR_EINVAL, "option --%s needs a value", o->name);
    char origin[300];
    snprintf(origin, sizeof origin, "--%s", o->name);
    int rc = s_set(o, settings, value, origin, err, errlen);
    return rc ? rc : 1;
}

int nr_config_load(const nr_config_option_t *table, void *settings, const char *env_prefix,
                   int argc, char **argv, int *first_arg, char *err, size_t errlen) {
    int rc;
    for (const nr_config_option_t *o = table; o->name; o++)
        if ((rc = s_set(o, settings, o->default_value, "default", err, errlen))) return rc;

    /* The config file goes first, so find --config before anything else. */
    const char *config_path = NULL;
    char env[256];
    s_env_name(env, sizeof env, env_prefix, "config");
    if (getenv(env) && *getenv(env)) config_path = getenv(env);
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (arg[0] != '-' || arg[1] != '-' || !strcmp(arg, "--")) break; /* as the flag loop below */
        if (!strcmp(arg, "--config")) {
            if (i + 1 < argc) config_path = argv[++i];
        } else if (!strncmp(arg, "--config=", 9)) {
            config_path = arg + 9;
        } else if (!strchr(arg, '=')) {
            /* Step over the value of "--name value", so a --config after
             * it is still found (it once was not: the file was ignored). */
            const nr_config_option_t *o = s_find(table, arg + 2, strlen(arg + 2));
            if (o && o->type != NR_CONFIG_BOOL) i++;
        }
    }
    if (config_path && (rc = s_load_file(table, settings, config_path, err, errlen))) return rc;

    for (const nr_config_option_t *o = table; o->name; o++) {
        s_env_name(env, sizeof env, env_prefix, o->name);
        const char *value = getenv(env);
        if (value && (rc = s_set(o, settings, value, env, err, errlen))) return rc;
    }

    int i = 1;
    for (; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "--")) { i++; break; }
        if (arg[0] != '-' || arg[1] != '-') break;
        if (!strcmp(arg, "--help")) return 1;
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        if (len == 6 && !strncmp(name, "config", 6)) {
            if (!eq) i++;
            continue;
        }
        rc = nr_config_flag(table, settings, argc, argv, &i, err, errlen);
        if (rc < 0) return rc;
        if (rc == 0)
            return nr_seterr(err, errlen, NR_EINVAL, "unknown option --%.*s (see --help)", (int)len, name);
    }
    if (first_arg) *first_arg = i;
    return 0;
}

void nr_config_print_help(FILE *out, const nr_config_option_t *table, const char *env_prefix) {
    char env[256], flag[128];
    fprintf(out, "Options (flag, or '%sNAME' in the environment, or 'name = value' in --config FILE):\n",
            env_prefix);
    for (const nr_config_option_t *o = table; o->name; o++) {
        s_env_name(env, sizeof env, env_prefix, o->name);
        snprintf(flag, sizeof flag, "--%s%s", o->name,
                 o->type == NR_CONFIG_INT ? " N" : o->type == NR_CONFIG_STRING ? " S" : "");
        fprintf(out, "  %-28s %s (default: %s; env %s)\n", flag, o->help,
                *o->default_value ? o->default_value : "none", env);
    }
    fprintf(out, "  %-28s %s\n  %-28s %s\n", "--config FILE", "read settings from FILE",
            "--help", "print this help");
}

int nr_config_start(const nr_config_option_t *table, void *settings, const char *env_prefix,
                    int argc, char **argv, const char *program, const char *usage_fmt, ...) {
    char err[1024] = "";
    int first = 0;
    int rc = nr_config_load(table, settings, env_prefix, argc, argv, &first, err, sizeof err);
    if (rc == 1) {
        va_list ap;
        va_start(ap, usage_fmt);
        vprintf(usage_fmt, ap);
        va_end(ap);
        nr_config_print_help(stdout, table, env_prefix);
        return 1;
    }
    if (rc) {
        fprintf(stderr, "%s: %s\n", program, err);
        return NR_EINVAL;
    }
    if (first < argc) {
        fprintf(stderr, "%s: unexpected argument '%s' (see --help)\n", program, argv[first]);
        return NR_EINVAL;
    }
    return 0;
}
