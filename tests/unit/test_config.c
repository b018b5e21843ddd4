/* SPDX-License-Identifier: MIT */
#include "cca_test.h"

#include <math.h>
#include <unistd.h>

#include "cca/config.h"

static int warnings;

static void count_warning(void *ctx, const char *msg)
{
    (void)ctx;
    (void)msg;
    warnings++;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_defaults(void **state)
{
    struct cca_config cfg;

    (void)state;
    unsetenv("PORT");
    unsetenv("OPENAI_API_KEY");
    assert_int_equal(cca_config_load(&cfg, NULL, NULL, NULL, NULL), CCA_OK);
    assert_int_equal(cfg.port, 8000);
    assert_string_equal(cfg.storage_path, "storage/dialogs");
    assert_string_equal(cfg.openai_model, "gpt-4o-mini");
    assert_string_equal(cfg.lexicon_path, "data/routing/lexicon.json");
    assert_true(isnan(cfg.openai_temperature));
    assert_int_equal(cfg.max_dialog_history, 20);
    assert_false(cca_config_has_llm(&cfg));
}

static void test_env_and_errors(void **state)
{
    struct cca_config cfg;
    struct cca_error err = {0};

    (void)state;
    setenv("PORT", "9001", 1);
    assert_int_equal(cca_config_load(&cfg, NULL, NULL, NULL, &err), CCA_OK);
    assert_int_equal(cfg.port, 9001);
    setenv("PORT", "70000", 1);
    assert_int_equal(cca_config_load(&cfg, NULL, NULL, NULL, &err), CCA_ERR_INVALID);
    assert_non_null(strstr(err.msg, "PORT"));
    setenv("PORT", "12abc", 1);
    assert_int_equal(cca_config_load(&cfg, NULL, NULL, NULL, &err), CCA_ERR_INVALID);
    unsetenv("PORT");
    setenv("ROUTER_DEFAULT_AGENT", "robot", 1);
    assert_int_equal(cca_config_load(&cfg, NULL, NULL, NULL, &err), CCA_ERR_INVALID);
    assert_non_null(strstr(err.msg, "ROUTER_DEFAULT_AGENT"));
    unsetenv("ROUTER_DEFAULT_AGENT");
    setenv("OPENAI_TEMPERATURE", "2.5", 1);
    assert_int_equal(cca_config_load(&cfg, NULL, NULL, NULL, &err), CCA_ERR_INVALID);
    setenv("OPENAI_TEMPERATURE", "0.7", 1);
    assert_int_equal(cca_config_load(&cfg, NULL, NULL, NULL, &err), CCA_OK);
    assert_true(fabs(cfg.openai_temperature - 0.7) < 1e-9);
    unsetenv("OPENAI_TEMPERATURE");
}

static void test_env_file(void **state)
{
    char dir[] = "/tmp/cca-config-XXXXXX";
    char path[64];
    struct cca_config cfg;
    struct cca_error err = {0};
    char desc[4096];

    (void)state;
    assert_non_null(mkdtemp(dir));
    (void)snprintf(path, sizeof(path), "%s/.env", dir);
    write_file(path, "# comment\n\nexport OPENAI_MODEL=\"gpt-test\"\nPORT='7000'\n"
                     "OPENAI_API_KEY=sk-secret-value\nNOT_A_SETTING=1\n");
    setenv("PORT", "7100", 1); /* the environment beats the file */
    warnings = 0;
    assert_int_equal(cca_config_load(&cfg, path, count_warning, NULL, &err), CCA_OK);
    assert_string_equal(cfg.openai_model, "gpt-test");
    assert_int_equal(cfg.port, 7100);
    assert_int_equal(warnings, 1);
    assert_true(cca_config_has_llm(&cfg));
    cca_config_describe(&cfg, desc, sizeof(desc));
    assert_null(strstr(desc, "sk-secret-value"));
    assert_non_null(strstr(desc, "OPENAI_API_KEY=<set>"));
    unsetenv("PORT");

    write_file(path, "PORT\n");
    assert_int_equal(cca_config_load(&cfg, path, NULL, NULL, &err), CCA_ERR_INVALID);
    {
        FILE *f = fopen(path, "w");

        for (int i = 0; i < 5000; i++)
            fputc('A', f);
        fputs("=1\n", f);
        fclose(f);
    }
    assert_int_equal(cca_config_load(&cfg, path, NULL, NULL, &err), CCA_ERR_INVALID);
    assert_non_null(strstr(err.msg, "longer"));
    /* A missing file is no error. */
    unlink(path);
    assert_int_equal(cca_config_load(&cfg, path, NULL, NULL, &err), CCA_OK);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_env_and_errors),
        cmocka_unit_test(test_env_file),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
