/* Program settings from one table: defaults, then a config file, then
 * environment variables, then command-line flags; validated once. */
#ifndef NR_COMMON_CONFIG_H
#define NR_COMMON_CONFIG_H

#include <stddef.h>
#include <stdio.h>

typedef enum { NR_CONFIG_INT, NR_CONFIG_STRING, NR_CONFIG_BOOL } nr_config_type_t;

/* One setting. `name` is the flag (--name), the file key (name = value) and,
 * upper-cased with '-' as '_' after the program's prefix, the environment
 * variable (NARRATOR_BROKER_ + REDIS_URL). INT fields are `long`, BOOL
 * fields are `int`, STRING fields are `char[size]` arrays. */
typedef struct {
    const char *name;
    nr_config_type_t type;
    long min, max;             /* INT only: inclusive range */
    const char *default_value; /* as it would be written in a file */
    size_t offset;             /* offsetof(settings struct, field) */
    size_t size;               /* STRING only: sizeof the char array */
    const char *help;
} nr_config_option_t;

#define NR_CONFIG_END {NULL, NR_CONFIG_INT, 0, 0, NULL, 0, 0, NULL}

/* One row for `field` of the settings struct TYPE (the offset, and the size
 * when it is a STRING's char array), so a table cannot get them wrong. */
#define NR_CONFIG_OPT(TYPE, name, type, min, max, def, field, help)                           \
    {name, type, min, max, def, offsetof(TYPE, field),                                        \
     type == NR_CONFIG_STRING ? sizeof(((TYPE *)0)->field) : 0, help}

/* Fills `settings` from the table (ended by NR_CONFIG_END). The config file
 * is taken from --config FILE or <env_prefix>CONFIG. Flags are read from
 * argv[1] on and stop at the first argument that is not a flag; its index is
 * stored in *first_arg (argc when there is none). Returns 0, 1 when --help
 * was given (the caller prints help and exits 0), or NR_EINVAL with a
 * message in err naming the bad setting and where it came from. */
int nr_config_load(const nr_config_option_t *table, void *settings, const char *env_prefix,
                   int argc, char **argv, int *first_arg, char *err, size_t errlen);

/* Reads one flag of the table at argv[*i] as nr_config_load reads its
 * flags: "--name value", "--name=value", and for a boolean "--name",
 * "--name=V" and "--no-name". Returns 1 when it was one (stored; *i is
 * moved past a separate value), 0 when argv[*i] is no flag of the table,
 * or NR_EINVAL with "--name ..." in err. For programs that take the
 * table's flags among their own (narrate after its command word). */
int nr_config_flag(const nr_config_option_t *table, void *settings, int argc, char **argv, int *i,
                   char *err, size_t errlen);

/* Prints one line per setting: flag, default, environment name, help. */
void nr_config_print_help(FILE *out, const nr_config_option_t *table, const char *env_prefix);

/* The settings step at the start of a program's main: nr_config_load, and
 * no arguments after the flags. On --help prints the usage (a printf format
 * and its arguments) and then the table to stdout and returns 1 (exit 0).
 * On a bad setting or a stray argument prints "<program>: <why>" to stderr
 * and returns NR_EINVAL (exit 2). Otherwise returns 0. */
int nr_config_start(const nr_config_option_t *table, void *settings, const char *env_prefix,
                    int argc, char **argv, const char *program, const char *usage_fmt, ...)
    __attribute__((format(printf, 7, 8)));

#endif
