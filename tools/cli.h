/* Shared pieces of the `kelp` command: subcommand signature and error reporting. */
#ifndef KELP_TOOLS_CLI_H
#define KELP_TOOLS_CLI_H

#include <stdint.h>

#include "kelp/kelp.h"

/* Exit codes: 0 success, 1 a failure of the work (bad file, shape, I/O), 2 a usage error. */
#define CLI_EXIT_FAILURE 1
#define CLI_EXIT_USAGE 2

/* Prints "kelp: <what>: <kelp_last_error()>" to stderr (without "<what>: " when NULL, for messages that already
 * name their file) and returns CLI_EXIT_FAILURE. */
int cli_fail(kelp_status status, const char *what);
/* Prints "kelp <command>: <message>" and a hint to run --help; returns CLI_EXIT_USAGE. */
int cli_usage_error(const char *command, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Reads a zoo name or a model file path into JSON text (free with kelp_free). */
kelp_status cli_load_model_json(const char *name_or_path, const kelp_zoo_options *zoo, char **json);
/* A whole decimal integer in [lo, hi]; -1 for anything else ("12x", "99999999999"). */
int cli_parse_int(const char *s, int lo, int hi, int *out);
/* A decimal uint64 (no sign): 0, or -1 for anything else. */
int cli_parse_u64(const char *s, uint64_t *out);
/* Parses "HxWxC" or "HxW" (channels stay 0); -1 for anything else. */
int cli_parse_input_size(const char *s, kelp_zoo_options *zoo);

int cmd_data(int argc, char **argv);
/* kelp data export (argv[1] is "export"), called by cmd_data; the help text of every data verb */
int cmd_data_export(int argc, char **argv);
void cmd_data_help(void);
int cmd_model(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_bench(int argc, char **argv);

#endif
