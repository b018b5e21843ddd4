/* SPDX-License-Identifier: MIT */
/* The store interface (include/cca/store.h): a thin dispatch to the backend. */
#include <stdlib.h>

#include "cca/mem.h"
#include "cca/store.h"

struct cca_store {
    const struct cca_store_ops *ops;
    void *impl;
};

static const char *const coll_names[CCA_STORE_COLL__COUNT] = {
    [CCA_STORE_DIALOGS] = "dialogs",
    [CCA_STORE_OPERATORS] = "operators",
    [CCA_STORE_CUSTOMERS] = "customers",
    [CCA_STORE_TELEGRAM] = "telegram",
};

const char *cca_store_coll_name(enum cca_store_coll coll)
{
    return (unsigned)coll < CCA_STORE_COLL__COUNT ? coll_names[coll] : NULL;
}

struct cca_store *cca_store_new(const struct cca_store_ops *ops, void *impl)
{
    struct cca_store *s = cca_xcalloc(1, sizeof(*s));

    s->ops = ops;
    s->impl = impl;
    return s;
}

const char *cca_store_backend(const struct cca_store *s)
{
    return s->ops->name;
}

cca_rc cca_store_load(struct cca_store *s, cca_store_load_fn load,
                      cca_store_report_fn report, void *ctx, struct cca_error *reterr)
{
    return s->ops->load(s->impl, load, report, ctx, reterr);
}

cca_rc cca_store_read(struct cca_store *s, enum cca_store_coll coll, const char *id,
                      json_t **ret_doc, size_t *ret_bytes, struct cca_error *reterr)
{
    return s->ops->read(s->impl, coll, id, ret_doc, ret_bytes, reterr);
}

void cca_store_commit(struct cca_store *s, enum cca_store_coll coll, const char *id,
                      json_t *old_doc, json_t *new_doc, cca_store_done_fn done, void *ctx)
{
    s->ops->commit(s->impl, coll, id, old_doc, new_doc, done, ctx);
}

void cca_store_remove(struct cca_store *s, enum cca_store_coll coll, const char *id,
                      cca_store_done_fn done, void *ctx)
{
    s->ops->remove(s->impl, coll, id, done, ctx);
}

void cca_store_get_health(struct cca_store *s, struct cca_store_health *ret)
{
    s->ops->health(s->impl, ret);
}

void cca_store_render_metrics(struct cca_store *s, FILE *out)
{
    s->ops->metrics(s->impl, out);
}

void cca_store_free(struct cca_store *s)
{
    if (s == NULL)
        return;
    s->ops->free(s->impl);
    free(s);
}
