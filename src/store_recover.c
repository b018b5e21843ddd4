/* SPDX-License-Identifier: MIT */
/*
 * The file store's reading side (include/cca/store_file.h,
 * docs/internals/store.md "Recovery"): the parse of one file (plain JSON, or
 * the earlier format folded), and recovery at load: every file read, the
 * journal replayed into them, damage salvaged and kept aside, the result made
 * durable before the first change is taken.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cca/dialog.h"
#include "cca/jsonpatch.h"
#include "cca/mem.h"
#include "cca/store_file.h"

#include "store_file_int.h"

/* ---- file contents ---------------------------------------------------------------- */

/* The next line of @p[0..len) from @at: its end (the '\n'), or NULL if it has none. */
static const char *line_end(const char *p, size_t len, size_t at)
{
    return memchr(p + at, '\n', len - at);
}

/* @p[0..len) holds only blanks. */
static bool is_blank(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
            return false;
    }
    return true;
}

/*
 * Fold the document at the head of @bytes and at most @limit change lines
 * (the format of earlier versions) into *ret_doc (new), filling @ret. Stops at
 * the first damaged line (ret->damaged set); a change that fails half-way may
 * leave its first operations applied, so the caller folds again with @limit =
 * ret->changes to drop them.
 */
static cca_rc fold(const char *bytes, size_t len, unsigned limit, json_t **ret_doc,
                   struct cca_store_file_parsed *ret, struct cca_error *reterr)
{
    json_error_t jerr;
    json_t *doc;
    size_t at;

    memset(ret, 0, sizeof(*ret));
    doc = json_loadb(bytes, len, JSON_DISABLE_EOF_CHECK | JSON_REJECT_DUPLICATES, &jerr);
    if (doc == NULL)
        return cca_error_set(reterr, CCA_ERR_INVALID, "corrupt JSON at line %d: %s",
                             jerr.line, jerr.text);
    at = (size_t)jerr.position; /* bytes read: the document ends there */
    while (at < len && is_blank(bytes + at, 1))
        at++;
    if (at < len && bytes[at] == '\n')
        at++;
    while (at < len) {
        const char *nl = line_end(bytes, len, at);
        size_t end = nl != NULL ? (size_t)(nl - bytes) : len;
        struct cca_error perr = {0};
        json_t *patch;

        if (is_blank(bytes + at, end - at)) {
            at = end + 1; /* a blank line (hand-edited file) */
            continue;
        }
        ret->legacy = true;
        if (nl == NULL) {
            /* No newline: an append cut short, even if what is there parses. */
            ret->dropped = len - at;
            break;
        }
        patch = json_loadb(bytes + at, end - at, JSON_REJECT_DUPLICATES, &jerr);
        if (patch == NULL && end + 1 == len) {
            /* The last line, cut short: an append interrupted before it was flushed. */
            ret->dropped = len - at;
            break;
        }
        if (patch == NULL || ret->changes == limit ||
            cca_jsonpatch_apply(doc, patch, &perr) != CCA_OK) {
            if (ret->changes < limit)
                (void)snprintf(ret->damage, sizeof(ret->damage),
                               "change %u at byte %zu: %.70s", ret->changes + 1, at,
                               patch == NULL ? jerr.text : perr.msg);
            json_decref(patch);
            ret->damaged = len - at;
            break;
        }
        json_decref(patch);
        ret->changes++;
        at = end + 1;
    }
    *ret_doc = doc;
    return CCA_OK;
}

static cca_rc validate(enum cca_store_coll coll, json_t *doc, const char *expected_id,
                       struct cca_error *reterr)
{
    switch (coll) {
        case CCA_STORE_DIALOGS:
            return cca_dialog_validate(doc, expected_id, reterr);
        default:
            return json_is_object(doc)
                       ? CCA_OK
                       : cca_error_set(reterr, CCA_ERR_INVALID, "not a JSON object");
    }
}

cca_rc cca_store_file_parse(enum cca_store_coll coll, const char *bytes, size_t len,
                            const char *expected_id, json_t **ret_doc,
                            struct cca_store_file_parsed *ret, struct cca_error *reterr)
{
    struct cca_store_file_parsed p;
    json_t *doc = NULL;
    json_t *lsn;
    cca_rc rc;

    rc = fold(bytes, len, UINT_MAX, &doc, &p, reterr);
    if (rc == CCA_OK && p.damaged > 0) {
        /* Fold again up to the last good change: a failed one may be half-applied. */
        char damage[sizeof(p.damage)];

        memcpy(damage, p.damage, sizeof(damage));
        json_decref(doc);
        doc = NULL;
        rc = fold(bytes, len, p.changes, &doc, &p, reterr);
        memcpy(p.damage, damage, sizeof(damage));
    }
    if (rc != CCA_OK)
        goto out;
    lsn = json_object_get(doc, CCA_STORE_FILE_LSN_KEY);
    if (lsn != NULL) {
        if (!json_is_integer(lsn) || json_integer_value(lsn) < 0) {
            rc = cca_error_set(reterr, CCA_ERR_INVALID, "%s is not a count",
                               CCA_STORE_FILE_LSN_KEY);
            goto out;
        }
        p.lsn = (uint64_t)json_integer_value(lsn);
        (void)json_object_del(doc, CCA_STORE_FILE_LSN_KEY);
    }
    rc = validate(coll, doc, expected_id, reterr);
    if (rc != CCA_OK)
        goto out;
    *ret_doc = doc;
    doc = NULL;
    *ret = p;
out:
    json_decref(doc);
    return rc;
}

/* ---- load and recovery --------------------------------------------------------------
 */

/* One document during recovery. */
struct rdoc {
    enum cca_store_coll coll;
    char id[37];
    json_t *base;    /* as its file held it (never changed), or NULL */
    json_t *doc;     /* with the journal's changes applied; NULL: none or removed */
    json_t *patches; /* the changes applied since @base, to redo after a failure */
    uint64_t lsn;
    size_t bytes;
    bool rewrite; /* its file must be written (replayed, earlier format) */
    bool removed; /* a journal change removed it */
    bool broken;  /* a change of it was damaged: later ones are ignored */
    bool dropped; /* no valid version at all: not loaded */
};

struct recovery {
    const struct cca_store_file_dirs *s;
    cca_store_report_fn report;
    void *ctx;
    struct rdoc *docs;
    size_t n;
    size_t cap;
    struct rdoc **index; /* open addressing by (coll, id) */
    size_t index_size;
    uint64_t max_lsn;
    /*
     * A line that is not a change record: whose change it held is unknown, so
     * nothing after it can be trusted to apply in order. Replay stops there
     * for every document; later lines are counted, not applied.
     */
    bool halted;
    unsigned long skipped; /* lines not replayed after the halt */
    bool keep_segments;    /* a replayed version was not valid: keep every segment */
};

static void say(struct recovery *r, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void say(struct recovery *r, const char *what, const char *fmt, ...)
{
    char why[400];
    va_list ap;

    if (r->report == NULL)
        return;
    va_start(ap, fmt);
    (void)vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    r->report(r->ctx, what, why);
}

static void index_rebuild(struct recovery *r)
{
    free(r->index);
    r->index_size = r->cap * 2;
    r->index = cca_xcalloc(r->index_size, sizeof(*r->index));
    for (size_t i = 0; i < r->n; i++) {
        size_t h = cca_store_file_hash(r->docs[i].coll, r->docs[i].id) % r->index_size;

        while (r->index[h] != NULL)
            h = (h + 1) % r->index_size;
        r->index[h] = &r->docs[i];
    }
}

static struct rdoc *rdoc_find(struct recovery *r, enum cca_store_coll coll,
                              const char *id)
{
    if (r->index_size == 0)
        return NULL;
    for (size_t h = cca_store_file_hash(coll, id) % r->index_size; r->index[h] != NULL;
         h = (h + 1) % r->index_size) {
        if (r->index[h]->coll == coll && strcmp(r->index[h]->id, id) == 0)
            return r->index[h];
    }
    return NULL;
}

static struct rdoc *rdoc_add(struct recovery *r, enum cca_store_coll coll, const char *id)
{
    struct rdoc *d;

    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 256;
        r->docs = cca_xrealloc(r->docs, r->cap * sizeof(*r->docs));
        index_rebuild(r); /* the array moved */
    }
    d = &r->docs[r->n++];
    memset(d, 0, sizeof(*d));
    d->coll = coll;
    memcpy(d->id, id, 37);
    {
        size_t h = cca_store_file_hash(coll, id) % r->index_size;

        while (r->index[h] != NULL)
            h = (h + 1) % r->index_size;
        r->index[h] = d;
    }
    return d;
}

static bool is_uuid_file(const char *name, char id[37])
{
    size_t len = strlen(name);
    char canon[37];

    if (len != 36 + 5 || strcmp(name + 36, ".json") != 0)
        return false;
    memcpy(id, name, 36);
    id[36] = '\0';
    return cca_uuid_canonical(id, canon) && strcmp(canon, id) == 0;
}

static bool is_tmp_file(const char *name)
{
    size_t len = strlen(name);

    return name[0] == '.' && len > 4 && strcmp(name + len - 4, ".tmp") == 0;
}

/*
 * Keep @name of @dirfd as a copy "<name>.damaged-<UTC time>" (a hard link;
 * "-2", "-3" ... after it when that name is taken). The name in @aside.
 */
static bool keep_aside(int dirfd, const char *name, char *aside, size_t size)
{
    char stamp[32];
    time_t now = time(NULL);
    struct tm tm;

    (void)strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", gmtime_r(&now, &tm));
    for (int n = 1; n <= 100; n++) {
        if (n == 1)
            (void)snprintf(aside, size, "%.60s.damaged-%.20s", name, stamp);
        else
            (void)snprintf(aside, size, "%.60s.damaged-%.20s-%d", name, stamp, n);
        if (linkat(dirfd, name, dirfd, aside, 0) == 0)
            return true;
        if (errno != EEXIST)
            return false;
    }
    return false;
}

/* Read one collection directory's files into @r. */
static cca_rc load_files(struct recovery *r, enum cca_store_coll coll,
                         struct cca_error *reterr)
{
    const struct cca_store_file_dirs *s = r->s;
    int dirfd = s->colldirs[coll];
    struct dirent *de;
    DIR *d = cca_store_file_opendir(dirfd);

    if (d == NULL)
        return cca_error_set(reterr, CCA_ERR_IO, "cannot list %s: %s", s->dir,
                             strerror(errno));
    while ((de = readdir(d)) != NULL) {
        struct cca_store_file_parsed parsed;
        struct cca_error err = {0};
        char why[240];
        char id[37];
        uint64_t seq;
        json_t *doc = NULL;
        size_t len = 0;
        struct rdoc *rd;
        char *bytes;
        cca_rc rc;
        bool known = false;

        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
            strcmp(de->d_name, ".gitkeep") == 0 ||
            strcmp(de->d_name, CCA_STORE_FILE_LOCK) == 0 ||
            cca_store_journal_parse_name(de->d_name, &seq))
            continue;
        for (int c = 0; c < CCA_STORE_COLL__COUNT; c++)
            known |= strcmp(de->d_name, cca_store_coll_name(c)) == 0;
        if (known)
            continue; /* another collection's directory */
        if (is_tmp_file(de->d_name)) {
            struct stat st;
            bool empty = fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                         S_ISREG(st.st_mode) && st.st_size == 0;

            /*
             * Empty: a checkpoint's spare temporary file (cca_store_file_write
             * swaps), removed quietly. Else an interrupted file write: the
             * target still holds its previous version.
             */
            (void)unlinkat(dirfd, de->d_name, 0);
            if (!empty)
                say(r, de->d_name,
                    "leftover temporary file of an interrupted write, removed");
            continue;
        }
        if (!is_uuid_file(de->d_name, id)) {
            say(r, de->d_name, "%s",
                strstr(de->d_name, ".damaged-") != NULL
                    ? "a damaged file kept aside by an earlier start, ignoring"
                    : "not a <uuid>.json file, ignoring");
            continue;
        }
        bytes = cca_store_file_read(dirfd, de->d_name, s->max_file_bytes, &len, &rc, why,
                                    sizeof(why));
        if (bytes == NULL) {
            say(r, de->d_name, "%s", why);
            continue;
        }
        rc = cca_store_file_parse(coll, bytes, len, id, &doc, &parsed, &err);
        free(bytes);
        if (rc != CCA_OK) {
            say(r, de->d_name, "invalid: %s, ignoring", err.msg);
            continue;
        }
        rd = rdoc_add(r, coll, id);
        rd->base = doc;
        rd->lsn = parsed.lsn;
        rd->bytes = len;
        rd->rewrite = parsed.legacy;
        if (parsed.lsn > r->max_lsn)
            r->max_lsn = parsed.lsn;
        if (parsed.damaged > 0) {
            char aside[96];

            if (keep_aside(dirfd, de->d_name, aside, sizeof(aside)))
                say(r, de->d_name,
                    "damaged: %s; salvaged with %u changes, %zu bytes dropped; the "
                    "damaged file is kept as %s",
                    parsed.damage, parsed.changes, parsed.damaged, aside);
            else {
                /* No copy: the file is not rewritten (salvaged again at each load). */
                rd->rewrite = false;
                say(r, de->d_name,
                    "damaged: %s; salvaged with %u changes, %zu bytes ignored; the file "
                    "is left as it is (no copy could be made: %s)",
                    parsed.damage, parsed.changes, parsed.damaged, strerror(errno));
            }
        } else if (parsed.dropped > 0) {
            say(r, de->d_name, "%zu bytes of an interrupted append dropped",
                parsed.dropped);
        }
    }
    closedir(d);
    return CCA_OK;
}

/* @rd's current version: its replayed document, else its file's. Borrowed. */
static json_t *rdoc_current(struct rdoc *rd)
{
    return rd->doc != NULL ? rd->doc : rd->base;
}

/* Redo @rd from its file's version with the changes that applied (after a failure). */
static void rdoc_redo(struct rdoc *rd)
{
    json_t *p;
    size_t i;

    json_decref(rd->doc);
    rd->doc = rd->base != NULL ? json_deep_copy(rd->base) : NULL;
    json_array_foreach (rd->patches, i, p) {
        if (json_is_object(p)) { /* a whole document */
            json_decref(rd->doc);
            rd->doc = json_deep_copy(p);
        } else if (rd->doc != NULL && cca_jsonpatch_apply(rd->doc, p, NULL) != CCA_OK) {
            break; /* cannot happen: it applied the first time */
        }
    }
}

/*
 * Apply one journal record (borrowed) to @r. Returns false when the record,
 * or a later one of its document, had to be ignored: damage, and the segment
 * is kept aside.
 */
static bool replay_record(struct recovery *r, json_t *rec, const char *where)
{
    const char *coll_s = json_string_value(json_object_get(rec, "coll"));
    const char *id = json_string_value(json_object_get(rec, "id"));
    json_t *lsn_j = json_object_get(rec, "lsn");
    json_t *patch = json_object_get(rec, "patch");
    json_t *doc = json_object_get(rec, "doc");
    bool remove = json_is_true(json_object_get(rec, "remove"));
    struct cca_error err = {0};
    enum cca_store_coll coll = CCA_STORE_COLL__COUNT;
    struct rdoc *rd;
    uint64_t lsn;
    char canon[37];

    for (int c = 0; coll_s != NULL && c < CCA_STORE_COLL__COUNT; c++) {
        if (strcmp(coll_s, cca_store_coll_name(c)) == 0)
            coll = c;
    }
    if (coll == CCA_STORE_COLL__COUNT || id == NULL || !cca_uuid_canonical(id, canon) ||
        strcmp(canon, id) != 0 || !json_is_integer(lsn_j) ||
        json_integer_value(lsn_j) <= 0 ||
        (json_is_array(patch) + json_is_object(doc) + remove) != 1) {
        say(r, where, "damaged: not a change record; replay stops here");
        r->halted = true;
        return false;
    }
    lsn = (uint64_t)json_integer_value(lsn_j);
    if (lsn > r->max_lsn)
        r->max_lsn = lsn;
    rd = rdoc_find(r, coll, id);
    if (rd == NULL)
        rd = rdoc_add(r, coll, id);
    if (lsn <= rd->lsn)
        return true; /* already in its file */
    if (rd->broken) {
        say(r, where, "a later change of %s %s, ignored after its damage", coll_s, id);
        return false;
    }
    if (remove) {
        json_decref(rd->doc);
        rd->doc = NULL;
        json_decref(rd->patches);
        rd->patches = NULL;
        rd->removed = true;
    } else if (doc != NULL) {
        if (validate(coll, doc, id, &err) != CCA_OK) {
            rd->broken = true;
            say(r, where,
                "damaged: a version of %s %s that is not valid (%s); it is kept as it "
                "was before, later changes ignored",
                coll_s, id, err.msg);
            return false;
        }
        json_decref(rd->doc);
        rd->doc = json_deep_copy(doc);
        rd->removed = false;
        if (rd->patches == NULL)
            rd->patches = json_array();
        (void)json_array_append(rd->patches, doc);
    } else {
        if (rdoc_current(rd) == NULL || rd->removed) {
            rd->broken = true;
            say(r, where,
                "damaged: a change of %s %s whose earlier version is missing; "
                "it and its later changes are ignored",
                coll_s, id);
            return false;
        }
        if (rd->doc == NULL)
            rd->doc = json_deep_copy(rd->base);
        if (cca_jsonpatch_apply(rd->doc, patch, &err) != CCA_OK) {
            rd->broken = true;
            rdoc_redo(rd);
            say(r, where,
                "damaged: a change of %s %s does not apply (%s); it is kept "
                "as it was before, later changes ignored",
                coll_s, id, err.msg);
            return false;
        }
        if (rd->patches == NULL)
            rd->patches = json_array();
        (void)json_array_append(rd->patches, patch);
    }
    rd->lsn = lsn;
    rd->rewrite = true;
    return true;
}

/*
 * Replay segment @seq (@last: the newest one). Returns true if it was sound
 * (a cut last line of the newest segment is not damage).
 */
static bool replay_segment(struct recovery *r, uint64_t seq, bool last)
{
    const struct cca_store_file_dirs *s = r->s;
    char name[64];
    char why[200];
    char where[96];
    size_t len = 0;
    size_t at = 0;
    unsigned line = 0;
    bool sound = true;
    cca_rc rc;
    char *bytes;

    cca_store_journal_name(seq, name);
    bytes =
        cca_store_file_read(s->dirfd, name, SIZE_MAX / 2, &len, &rc, why, sizeof(why));
    if (bytes == NULL) {
        say(r, name, "cannot be read: %s; its changes are lost", why);
        return false;
    }
    while (at < len) {
        const char *nl = line_end(bytes, len, at);
        size_t end = nl != NULL ? (size_t)(nl - bytes) : len;
        json_t *rec;

        line++;
        (void)snprintf(where, sizeof(where), "%s line %u", name, line);
        if (r->halted) {
            r->skipped++;
            sound = false; /* keep a copy of what was not replayed */
            at = end + 1;
            continue;
        }
        rec = nl != NULL ? json_loadb(bytes + at, end - at, JSON_REJECT_DUPLICATES, NULL)
                         : NULL;
        if (rec == NULL) {
            if (end + 1 >= len) {
                /* The end of a segment: a change cut by a crash, never acknowledged. */
                say(r, where, "%zu bytes of a change cut short by a crash, dropped",
                    len - at);
                if (!last)
                    sound = false; /* only the newest segment may end cut */
            } else {
                say(r, where, "damaged: not JSON; replay stops here");
                r->halted = true;
                sound = false;
            }
        } else if (!replay_record(r, rec, where)) {
            sound = false;
        }
        json_decref(rec);
        at = end + 1;
    }
    free(bytes);
    return sound;
}

static void recovery_cleanup(struct recovery *r)
{
    for (size_t i = 0; i < r->n; i++) {
        json_decref(r->docs[i].base);
        json_decref(r->docs[i].doc);
        json_decref(r->docs[i].patches);
    }
    free(r->docs);
    free(r->index);
}

/*
 * Make the recovered state the files' state: write every document that
 * changed, flush, then delete the journal (keeping damaged segments aside).
 */
static cca_rc settle_recovery(struct recovery *r, const uint64_t *seqs, const bool *sound,
                              size_t nseq, struct cca_error *reterr)
{
    const struct cca_store_file_dirs *s = r->s;

    for (size_t i = 0; i < r->n; i++) {
        struct rdoc *rd = &r->docs[i];
        struct cca_error err = {0};
        json_t *cur = rdoc_current(rd);
        char fin[64];
        int e;

        if (!rd->rewrite)
            continue;
        if (rd->removed) {
            (void)snprintf(fin, sizeof(fin), "%s.json", rd->id);
            if (unlinkat(s->colldirs[rd->coll], fin, 0) != 0 && errno != ENOENT)
                return cca_error_set(reterr, CCA_ERR_IO, "cannot remove %s: %s", fin,
                                     strerror(errno));
            continue;
        }
        if (cur == NULL)
            continue;
        if (validate(rd->coll, cur, rd->id, &err) != CCA_OK) {
            /* A replayed version that is not valid: the file's, if there is one. */
            r->keep_segments = true;
            json_decref(rd->doc);
            rd->doc = NULL;
            if (rd->base == NULL) {
                say(r, rd->id,
                    "damaged: the journal's version is not valid (%s) and there is no "
                    "file; not loaded (the journal is kept aside)",
                    err.msg);
                rd->dropped = true;
                continue;
            }
            say(r, rd->id,
                "damaged: the journal's version is not valid (%s); the file's version "
                "is kept (the journal is kept aside)",
                err.msg);
            cur = rd->base;
        }
        e = cca_store_file_write(s->colldirs[rd->coll], rd->id, cur, rd->lsn, false,
                                 false, &rd->bytes);
        if (e != 0)
            return cca_error_set(reterr, cca_store_file_errno_rc(e),
                                 "cannot write %s.json: %s", rd->id, strerror(e));
    }
    if (s->fsync && syncfs(s->dirfd) != 0)
        return cca_error_set(reterr, cca_store_file_errno_rc(errno),
                             "cannot flush %s: %s", s->dir, strerror(errno));
    for (size_t i = 0; i < nseq; i++) {
        char name[64];
        char aside[96];

        cca_store_journal_name(seqs[i], name);
        if (!sound[i] || r->keep_segments) {
            if (!keep_aside(s->dirfd, name, aside, sizeof(aside))) {
                /* Never delete what could not be copied: replayed again next time. */
                say(r, name, "damaged segment left in place (no copy could be made: %s)",
                    strerror(errno));
                continue;
            }
            say(r, name, "damaged segment kept as %s", aside);
        }
        (void)unlinkat(s->dirfd, name, 0);
    }
    if (s->fsync && fsync(s->dirfd) != 0)
        return cca_error_set(reterr, cca_store_file_errno_rc(errno),
                             "cannot flush %s: %s", s->dir, strerror(errno));
    return CCA_OK;
}

cca_rc cca_store_file_recover(const struct cca_store_file_dirs *dirs,
                              cca_store_load_fn load, cca_store_report_fn report,
                              void *ctx, uint64_t *ret_next_lsn, uint64_t *ret_next_seq,
                              struct cca_error *reterr)
{
    struct recovery r = {.s = dirs, .report = report, .ctx = ctx};
    uint64_t *seqs = NULL;
    bool *sound = NULL;
    size_t nseq = 0;
    cca_rc rc = CCA_OK;

    r.cap = 256;
    r.docs = cca_xcalloc(r.cap, sizeof(*r.docs));
    index_rebuild(&r);
    for (int c = 0; c < CCA_STORE_COLL__COUNT && rc == CCA_OK; c++)
        rc = load_files(&r, c, reterr);
    if (rc == CCA_OK)
        rc = cca_store_journal_list(dirs->dirfd, &seqs, &nseq, reterr);
    if (rc != CCA_OK)
        goto out;
    sound = cca_xcalloc(nseq + 1, sizeof(*sound));
    for (size_t i = 0; i < nseq; i++)
        sound[i] = replay_segment(&r, seqs[i], i + 1 == nseq);
    if (r.halted)
        say(&r, "journal",
            "damaged: %lu later lines were not replayed (every document keeps its "
            "changes from before the damage); the segments are kept aside",
            r.skipped);
    rc = settle_recovery(&r, seqs, sound, nseq, reterr);
    if (rc != CCA_OK)
        goto out;
    *ret_next_lsn = r.max_lsn + 1;
    *ret_next_seq = nseq > 0 ? seqs[nseq - 1] + 1 : 1;
    for (size_t i = 0; i < r.n; i++) {
        struct rdoc *rd = &r.docs[i];
        json_t *cur = rdoc_current(rd);

        if (rd->removed || rd->dropped || cur == NULL)
            continue;
        load(ctx, rd->coll, rd->id, json_incref(cur), rd->bytes);
    }
out:
    recovery_cleanup(&r);
    free(seqs);
    free(sound);
    return rc;
}
