/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the .env parser (config.c) through cca_config_load, the way
 * main.c calls it at start-up. The input is the file; it is written to a
 * memfd and passed as /proc/self/fd/N. Every setting is removed from the
 * process environment once (names taken from cca_config_print_help, so the
 * list never drifts from the settings table) so only the file counts.
 * Invariants checked: CCA_OK or CCA_ERR_INVALID (never IO: the file is
 * readable) with a message; on success the strings are NUL-terminated, the
 * documented defaults hold (lexicon path under DATA_DIR when unset, storage
 * path not empty), the start-up description fits its buffer and shows no byte
 * of a secret (it equals the description with the secrets replaced).
 */
#include <ctype.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cca/config.h"
#include "fuzz.h"

/* Unset every NAME listed in the settings table of --help. */
static void clear_settings_env(void)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    char *line;
    char *save = NULL;
    bool table = false;

    if (f == NULL)
        abort();
    cca_config_print_help(f);
    fclose(f);
    for (line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        size_t n = 0;

        if (strncmp(line, "NAME ", 5) == 0) {
            table = true;
            continue;
        }
        while (isupper((unsigned char)line[n]) || isdigit((unsigned char)line[n]) ||
               line[n] == '_')
            n++;
        if (table && n > 0 && line[n] == ' ') {
            line[n] = '\0';
            (void)unsetenv(line);
        }
    }
    free(text);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_init();
    clear_settings_env();
    return 0;
}

/* Replace a secret by a same-"setness" placeholder. */
static void mask_secret(char *s)
{
    if (s[0] != '\0')
        strcpy(s, "x");
}

static void count_warning(void *ctx, const char *msg)
{
    FUZZ_CHECK(msg != NULL && msg[0] != '\0');
    (*(unsigned *)ctx)++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cca_config *cfg = cca_xmalloc(sizeof(*cfg));
    struct cca_config *masked = cca_xmalloc(sizeof(*masked));
    char desc_masked[2048];
    struct cca_error err = {0};
    unsigned warnings = 0;
    char path[64];
    char desc[2048];
    size_t off = 0;
    cca_rc rc;
    int fd = memfd_create("fuzz.env", MFD_CLOEXEC);

    FUZZ_CHECK(fd >= 0);
    while (off < size) {
        ssize_t n = write(fd, data + off, size - off);

        FUZZ_CHECK(n > 0);
        off += (size_t)n;
    }
    (void)snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    rc = cca_config_load(cfg, path, count_warning, &warnings, &err);
    FUZZ_CHECK(rc == CCA_OK || rc == CCA_ERR_INVALID);
    if (rc != CCA_OK) {
        FUZZ_CHECK(err.code == rc && err.msg[0] != '\0');
        goto out;
    }
    FUZZ_CHECK(memchr(cfg->host, '\0', sizeof(cfg->host)) != NULL);
    FUZZ_CHECK(memchr(cfg->data_dir, '\0', sizeof(cfg->data_dir)) != NULL);
    FUZZ_CHECK(memchr(cfg->lexicon_path, '\0', sizeof(cfg->lexicon_path)) != NULL);
    FUZZ_CHECK(memchr(cfg->api_keys, '\0', sizeof(cfg->api_keys)) != NULL);
    FUZZ_CHECK(memchr(cfg->cors_origins, '\0', sizeof(cfg->cors_origins)) != NULL);
    FUZZ_CHECK(cfg->lexicon_path[0] != '\0' && cfg->storage_path[0] != '\0');
    FUZZ_CHECK(cfg->port <= 65535 && cfg->threads >= 1 && cfg->threads <= 64);
    FUZZ_CHECK(cfg->llm_timeout_s >= 0.1 && cfg->llm_timeout_s <= 600);
    cca_config_describe(cfg, desc, sizeof(desc));
    FUZZ_CHECK(strlen(desc) < sizeof(desc));
    /* Secrets never reach the description: only whether they are set does. */
    *masked = *cfg;
    mask_secret(masked->openai_api_key);
    mask_secret(masked->api_keys);
    mask_secret(masked->admin_api_keys);
    cca_config_describe(masked, desc_masked, sizeof(desc_masked));
    FUZZ_CHECK(strcmp(desc, desc_masked) == 0);
    (void)cca_config_has_llm(cfg);
out:
    close(fd);
    free(masked);
    free(cfg);
    return 0;
}
