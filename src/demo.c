/* SPDX-License-Identifier: MIT */
/*
 * The demo data generator (include/cca/demo.h; seed 000's main.py): operators,
 * customer profiles and dialogs written through the file store with the
 * service's own document functions, then a readable summary.
 *
 * Determinism. One 64-bit seed drives everything through splitmix64 (Steele,
 * Lea and Flood, OOPSLA 2014; S. Vigna's public-domain reference code): each
 * operator, customer and dialog draws from its own stream, seeded from the
 * seed, its kind and its number. Dialogs are made in order and depend only on
 * the ones before them (an operator's free seats), so the first 10 are the same
 * whether 10 or 100,000 are made. Times fall in the --days days before the
 * start of the current UTC day: the same seed and counts give the same files
 * all day long (operator tokens excepted: random, printed once, never stored).
 * The last DIALOG_MARGIN_MS of the window stay free, so no event of a dialog (a
 * close, a rating) lies past its end; open dialogs are among the last two days,
 * as a live service's are.
 *
 * The AI's words are the service's: each customer turn goes through
 * cca_turn_start without an LLM (the keyword router and the offline responder,
 * exactly as the service answers offline), memoised per (text, current agent)
 * since both are pure. Tokens and latencies are drawn as an LLM would spend
 * them, so the statistics have something to show. The human side is recorded
 * as the engine records it (engine.c, handoff.c): the same transitions,
 * reasons, actors, system notices (cca_handoff_notice) and flags. Operators are
 * offline, except those left holding open dialogs: busy, within max_dialogs,
 * since an operator who goes offline hands every dialog back to the queue
 * (docs/OPERATORS.md) and the server would do so at start-up.
 *
 * Cost: the store writes each document twice (its journal line, then its
 * file, on one thread each): about 70% of the CPU of a run (perf).
 * 100,000 dialogs (770 MB in 100,000 files) took 42 to 51 s on 2 shared cores.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "cca/agent.h"
#include "cca/assign.h"
#include "cca/common.h"
#include "cca/customer.h"
#include "cca/demo.h"
#include "cca/dialog.h"
#include "cca/handoff.h"
#include "cca/mem.h"
#include "cca/operator.h"
#include "cca/record.h"
#include "cca/router.h"
#include "cca/store.h"
#include "cca/store_file.h"
#include "cca/text.h"
#include "cca/turn.h"

#define DAY_MS ((int64_t)86400000)

/* No dialog lasts this long (turns, queue, operators, close, rating): see above. */
#define DIALOG_MARGIN_MS (6 * 3600 * (int64_t)1000)

/* Commits in flight at most: enough for the writer to batch (group commit). */
#define MAX_IN_FLIGHT 1024

/*
 * Back-pressure: past BACKLOG_HIGH documents committed but not yet in their
 * files, wait until the store is down to BACKLOG_LOW. The store's checkpointer
 * writes the files on one thread, niced (store_file.c), and is the slowest
 * stage: without this every document waits in memory (2 GB for 100,000
 * dialogs, measured) and the files are written only at the end.
 */
#define BACKLOG_HIGH  4096
#define BACKLOG_LOW   1024
#define BACKLOG_EVERY 256 /* documents between two looks */

/* Rows shown per summary table. */
#define TOP_N 10

/* ---- options ------------------------------------------------------------------- */

struct opts {
    unsigned long operators;
    unsigned long customers;
    unsigned long dialogs;
    unsigned long days;
    uint64_t seed;
    const char *storage;
    bool quiet;
};

static void usage(FILE *out)
{
    fprintf(
        out,
        "Usage: call-center-agents demo-data [--operators N] [--customers N]\n"
        "         [--dialogs N] [--seed N] [--days D] [--storage DIR] [--quiet]\n"
        "Writes demo operators, customer profiles and dialogs into the storage\n"
        "directory (refused while a server runs on it), then prints a summary.\n"
        "  --operators N  operators, 1..1000 (default 5)\n"
        "  --customers N  customers, 1..1000000 (default 10)\n"
        "  --dialogs N    dialogs, 0..1000000 (default 120)\n"
        "  --seed N       0..18446744073709551615 (default 1); the same seed, counts\n"
        "                 and UTC day give the same data\n"
        "  --days D       dialogs spread over the D days before today, 1..3650\n"
        "                 (default 14)\n"
        "  --storage DIR  default DIALOGS_STORAGE_PATH\n"
        "  --quiet        print nothing but errors\n");
}

/* @s as an integer in [@min, @max] (decimal digits only). */
static bool parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *ret)
{
    char *end = NULL;
    unsigned long long v;

    if (s == NULL || *s < '0' || *s > '9')
        return false;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return false;
    *ret = v;
    return true;
}

/* The value of option @name at argv[*i]: "--name=v" or "--name v". */
static const char *option_value(int argc, char **argv, int *i, const char *name)
{
    const char *a = argv[*i];
    size_t n = strlen(name);

    if (strncmp(a, name, n) != 0)
        return NULL;
    if (a[n] == '=')
        return a + n + 1;
    if (a[n] != '\0')
        return NULL;
    if (*i + 1 >= argc)
        return "";
    return argv[++*i];
}

/* Returns 0 (go), 2 (usage, said on stderr) or -1 (--help printed). */
static int parse_opts(const struct cca_config *cfg, int argc, char **argv, struct opts *o)
{
    const struct {
        const char *name;
        uint64_t min, max;
        unsigned long *dst;
    } nums[] = {
        {"--operators", 1, 1000, &o->operators},
        {"--customers", 1, 1000000, &o->customers},
        {"--dialogs", 0, 1000000, &o->dialogs},
        {"--days", 1, 3650, &o->days},
    };

    *o = (struct opts){.operators = 5,
                       .customers = 10,
                       .dialogs = 120,
                       .days = 14,
                       .seed = 1,
                       .storage = cfg->storage_path};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = NULL;
        bool known = false;

        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return -1;
        }
        if (strcmp(a, "--quiet") == 0 || strcmp(a, "-q") == 0) {
            o->quiet = true;
            continue;
        }
        for (size_t k = 0; k < CCA_ARRAY_SIZE(nums) && !known; k++) {
            uint64_t n;

            if ((v = option_value(argc, argv, &i, nums[k].name)) == NULL)
                continue;
            known = true;
            if (!parse_u64(v, nums[k].min, nums[k].max, &n)) {
                fprintf(stderr,
                        "demo-data: %s must be an integer in %" PRIu64 "..%" PRIu64
                        ", not '%s'\n",
                        nums[k].name, nums[k].min, nums[k].max, v);
                goto bad;
            }
            *nums[k].dst = (unsigned long)n;
        }
        if (known)
            continue;
        if ((v = option_value(argc, argv, &i, "--seed")) != NULL) {
            if (!parse_u64(v, 0, UINT64_MAX, &o->seed)) {
                fprintf(stderr,
                        "demo-data: --seed must be an integer in "
                        "0..18446744073709551615, not '%s'\n",
                        v);
                goto bad;
            }
            continue;
        }
        if ((v = option_value(argc, argv, &i, "--storage")) != NULL) {
            if (v[0] == '\0') {
                fprintf(stderr, "demo-data: --storage needs a directory\n");
                goto bad;
            }
            o->storage = v;
            continue;
        }
        fprintf(stderr, "demo-data: unknown argument '%s'\n", a);
        goto bad;
    }
    return 0;
bad:
    usage(stderr);
    return 2;
}

/* ---- the random streams ---------------------------------------------------------- */

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* splitmix64: the next output of the stream @s. */
static uint64_t rnd(uint64_t *s)
{
    *s += 0x9e3779b97f4a7c15ULL;
    return mix64(*s);
}

/* Uniform in [0, @n) (@n >= 1; the modulo bias is below n / 2^64). */
static uint64_t below(uint64_t *s, uint64_t n)
{
    return rnd(s) % n;
}

static int64_t range(uint64_t *s, int64_t lo, int64_t hi)
{
    return lo + (int64_t)below(s, (uint64_t)(hi - lo) + 1);
}

static bool chance(uint64_t *s, unsigned percent)
{
    return below(s, 100) < percent;
}

/* An index drawn with the given weights (their sum > 0). */
static size_t weighted(uint64_t *s, const unsigned *w, size_t n)
{
    unsigned sum = 0;
    uint64_t x;

    for (size_t i = 0; i < n; i++)
        sum += w[i];
    x = below(s, sum);
    for (size_t i = 0; i < n; i++) {
        if (x < w[i])
            return i;
        x -= w[i];
    }
    return n - 1;
}

/* How many customer turns or exchanges: 1..4, most conversations being short. */
static unsigned how_many(uint64_t *s, unsigned max)
{
    static const unsigned w[] = {40, 32, 18, 10}; /* 1, 2, 3, 4 */

    return (unsigned)weighted(s, w, max < CCA_ARRAY_SIZE(w) ? max : CCA_ARRAY_SIZE(w)) +
           1;
}

enum stream_kind { STREAM_OPERATOR = 1, STREAM_CUSTOMER = 2, STREAM_DIALOG = 3 };

/* The stream of thing @index of @kind: independent of every other thing's. */
static uint64_t stream_of(uint64_t seed, enum stream_kind kind, uint64_t index)
{
    return mix64(seed ^ 0x6a09e667f3bcc909ULL) ^
           mix64(((uint64_t)kind << 56) ^ (index + 0x3c6ef372fe94f82bULL));
}

/*
 * A version 4 UUID (RFC 9562 section 5.4) made of the stream's bits, canonical
 * lower case. By hand, not snprintf: a dialog takes a dozen of them.
 */
static void uuid_of(uint64_t *s, char ret[37])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char b[16];
    uint64_t hi = rnd(s);
    uint64_t lo = rnd(s);
    size_t k = 0;

    for (int i = 0; i < 8; i++) {
        b[i] = (unsigned char)(hi >> (56 - 8 * i));
        b[8 + i] = (unsigned char)(lo >> (56 - 8 * i));
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            ret[k++] = '-';
        ret[k++] = hex[b[i] >> 4];
        ret[k++] = hex[b[i] & 0x0f];
    }
    ret[k] = '\0';
}

#define PICK(s, arr) ((arr)[below((s), CCA_ARRAY_SIZE(arr))])

/* ---- people ---------------------------------------------------------------------- */

/* A Russian name part and its Latin transliteration (for e-mail addresses). */
struct ru_name {
    const char *cyr;
    const char *lat;
};

static const struct ru_name ru_male[] = {
    {"Александр", "aleksandr"}, {"Дмитрий", "dmitry"},        {"Максим", "maksim"},
    {"Сергей", "sergey"},       {"Андрей", "andrey"},         {"Алексей", "aleksey"},
    {"Иван", "ivan"},           {"Михаил", "mikhail"},        {"Никита", "nikita"},
    {"Егор", "egor"},           {"Артём", "artem"},           {"Павел", "pavel"},
    {"Владимир", "vladimir"},   {"Николай", "nikolay"},       {"Олег", "oleg"},
    {"Роман", "roman"},         {"Константин", "konstantin"},
};

static const struct ru_name ru_female[] = {
    {"Анна", "anna"},           {"Мария", "maria"},         {"Елена", "elena"},
    {"Ольга", "olga"},          {"Наталья", "natalya"},     {"Татьяна", "tatyana"},
    {"Екатерина", "ekaterina"}, {"Ирина", "irina"},         {"Светлана", "svetlana"},
    {"Юлия", "yulia"},          {"Анастасия", "anastasia"}, {"Дарья", "darya"},
    {"Ксения", "ksenia"},       {"Виктория", "viktoria"},   {"Полина", "polina"},
    {"Алина", "alina"},
};

/* Surnames in the masculine form; the feminine adds "а" ("Иванов", "Иванова"). */
static const struct ru_name ru_surname[] = {
    {"Иванов", "ivanov"},     {"Смирнов", "smirnov"},    {"Кузнецов", "kuznetsov"},
    {"Попов", "popov"},       {"Васильев", "vasilyev"},  {"Петров", "petrov"},
    {"Соколов", "sokolov"},   {"Михайлов", "mikhaylov"}, {"Новиков", "novikov"},
    {"Фёдоров", "fedorov"},   {"Морозов", "morozov"},    {"Волков", "volkov"},
    {"Алексеев", "alekseev"}, {"Лебедев", "lebedev"},    {"Семёнов", "semenov"},
    {"Егоров", "egorov"},     {"Павлов", "pavlov"},      {"Козлов", "kozlov"},
    {"Степанов", "stepanov"}, {"Николаев", "nikolaev"},  {"Орлов", "orlov"},
    {"Андреев", "andreev"},   {"Макаров", "makarov"},    {"Никитин", "nikitin"},
    {"Захаров", "zakharov"},  {"Зайцев", "zaytsev"},     {"Соловьёв", "solovyev"},
    {"Борисов", "borisov"},   {"Яковлев", "yakovlev"},   {"Григорьев", "grigoryev"},
    {"Романов", "romanov"},   {"Белов", "belov"},
};

/* Patronymics: [0] masculine, [1] feminine. */
static const char *const ru_patronymic[][2] = {
    {"Александрович", "Александровна"},
    {"Сергеевич", "Сергеевна"},
    {"Дмитриевич", "Дмитриевна"},
    {"Андреевич", "Андреевна"},
    {"Алексеевич", "Алексеевна"},
    {"Иванович", "Ивановна"},
    {"Михайлович", "Михайловна"},
    {"Николаевич", "Николаевна"},
    {"Владимирович", "Владимировна"},
    {"Петрович", "Петровна"},
    {"Юрьевич", "Юрьевна"},
    {"Викторович", "Викторовна"},
    {"Олегович", "Олеговна"},
    {"Павлович", "Павловна"},
    {"Евгеньевич", "Евгеньевна"},
};

static const char *const en_male[] = {
    "James",  "John",    "Robert", "Michael", "William", "David", "Richard", "Thomas",
    "Daniel", "Matthew", "Oliver", "Harry",   "George",  "Jack",  "Samuel",  "Liam",
};

static const char *const en_female[] = {
    "Mary", "Emma",   "Olivia",  "Sophia", "Emily", "Charlotte", "Amelia",   "Grace",
    "Lucy", "Hannah", "Jessica", "Sarah",  "Laura", "Chloe",     "Isabella", "Megan",
};

static const char *const en_surname[] = {
    "Smith",  "Johnson",  "Williams", "Brown",  "Jones", "Miller", "Davis",  "Wilson",
    "Taylor", "Clark",    "Walker",   "Wright", "Green", "Hall",   "Wood",   "Harris",
    "Martin", "Thompson", "White",    "Baker",  "Evans", "Turner", "Hughes", "Cooper",
};

/* Moscow twice: it is where most customers of a Russian service live. */
static const char *const ru_city[] = {
    "Москва",      "Москва",         "Санкт-Петербург", "Казань",
    "Новосибирск", "Екатеринбург",   "Нижний Новгород", "Самара",
    "Краснодар",   "Ростов-на-Дону", "Воронеж",         "Пермь",
    "Уфа",         "Томск",          "Калининград",
};

static const char *const en_city[] = {
    "London",  "Berlin",    "Manchester", "Dublin", "Amsterdam", "New York",
    "Toronto", "Edinburgh", "Prague",     "Vienna", "Boston",    "Helsinki",
};

static const char *const ru_position[] = {
    "Менеджер по продажам",
    "Инженер-конструктор",
    "Бухгалтер",
    "Учитель",
    "Врач",
    "Программист",
    "Дизайнер",
    "Юрист",
    "Студент",
    "Предприниматель",
    "Логист",
    "Маркетолог",
    "Архитектор",
    "Водитель",
    "Экономист",
};

static const char *const en_position[] = {
    "Sales manager",
    "Mechanical engineer",
    "Accountant",
    "Teacher",
    "Doctor",
    "Software developer",
    "Designer",
    "Lawyer",
    "Student",
    "Entrepreneur",
    "Logistics coordinator",
    "Marketing specialist",
    "Architect",
    "Nurse",
};

static const char *const ru_op_position[] = {
    "Оператор поддержки",
    "Старший оператор",
    "Специалист технической поддержки",
    "Менеджер по работе с клиентами",
    "Руководитель смены",
};

static const char *const en_op_position[] = {
    "Support agent",
    "Senior support agent",
    "Technical support specialist",
    "Customer success manager",
    "Shift lead",
};

/*
 * struct person - one generated person (an operator or a customer).
 * @name:      how they are called: "Анна Иванова", "Emily Clark".
 * @full_name: "Иванова Анна Сергеевна" (surname, name, patronymic), "Emily Clark".
 */
struct person {
    enum cca_lang lang;
    char first[48];     /* the first name as written in @lang */
    char first_lat[48]; /* ... in Latin letters */
    char name[96];
    char full_name[144];
    char city[48];
    char birth_date[11];
    char position[72];
    int experience;
    char phone[24];
    char email[96];
};

static void lower_ascii(char *s)
{
    for (; *s != '\0'; s++) {
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
    }
}

/* A person from stream @s: 60% Russian, 40% English; ages fit @year (the current). */
static void make_person(uint64_t *s, bool is_operator, int year, struct person *p)
{
    static const unsigned mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool female = chance(s, 50);
    int by = (int)range(s, 1960, 2004);
    int bm = (int)range(s, 1, 12);
    int dim = (int)mdays[bm - 1] +
              (bm == 2 && (by % 4 == 0 && (by % 100 != 0 || by % 400 == 0)) ? 1 : 0);
    int bd = (int)range(s, 1, dim);
    int max_exp = year - by - 18;
    char local[80];

    memset(p, 0, sizeof(*p));
    p->lang = chance(s, 60) ? CCA_LANG_RU : CCA_LANG_EN;
    if (p->lang == CCA_LANG_RU) {
        const struct ru_name *first = female ? &PICK(s, ru_female) : &PICK(s, ru_male);
        const struct ru_name *last = &PICK(s, ru_surname);
        const char *patr = ru_patronymic[below(s, CCA_ARRAY_SIZE(ru_patronymic))][female];
        const char *fem = female ? "а" : "";

        (void)snprintf(p->first, sizeof(p->first), "%s", first->cyr);
        (void)snprintf(p->first_lat, sizeof(p->first_lat), "%c%s",
                       first->lat[0] - 'a' + 'A', first->lat + 1);
        (void)snprintf(p->name, sizeof(p->name), "%s %s%s", first->cyr, last->cyr, fem);
        (void)snprintf(p->full_name, sizeof(p->full_name), "%s%s %s %s", last->cyr, fem,
                       first->cyr, patr);
        (void)snprintf(p->city, sizeof(p->city), "%s", PICK(s, ru_city));
        (void)snprintf(p->position, sizeof(p->position), "%s",
                       is_operator ? PICK(s, ru_op_position) : PICK(s, ru_position));
        int code = (int)below(s, 100);
        int n1 = (int)below(s, 1000);
        int n2 = (int)below(s, 100);
        int n3 = (int)below(s, 100);

        (void)snprintf(p->phone, sizeof(p->phone), "+7 9%02d %03d-%02d-%02d", code, n1,
                       n2, n3);
        (void)snprintf(local, sizeof(local), "%s.%s%s", first->lat, last->lat,
                       female ? "a" : "");
    } else {
        const char *first = female ? PICK(s, en_female) : PICK(s, en_male);
        const char *last = PICK(s, en_surname);

        (void)snprintf(p->first, sizeof(p->first), "%s", first);
        (void)snprintf(p->first_lat, sizeof(p->first_lat), "%s", first);
        (void)snprintf(p->name, sizeof(p->name), "%s %s", first, last);
        (void)snprintf(p->full_name, sizeof(p->full_name), "%s %s", first, last);
        (void)snprintf(p->city, sizeof(p->city), "%s", PICK(s, en_city));
        (void)snprintf(p->position, sizeof(p->position), "%s",
                       is_operator ? PICK(s, en_op_position) : PICK(s, en_position));
        /* Numbers set aside for fiction: Ofcom's 07700 900xxx, the US 555-01xx. */
        if (chance(s, 50))
            (void)snprintf(p->phone, sizeof(p->phone), "+44 7700 900%03d",
                           (int)below(s, 1000));
        else
            (void)snprintf(p->phone, sizeof(p->phone), "+1 202-555-01%02d",
                           (int)below(s, 100));
        (void)snprintf(local, sizeof(local), "%s.%s", first, last);
        lower_ascii(local);
    }
    (void)snprintf(p->birth_date, sizeof(p->birth_date), "%04d-%02d-%02d", by, bm, bd);
    p->experience = (int)range(s, 0, max_exp < 0 ? 0 : max_exp > 30 ? 30 : max_exp);
    /* Reserved example domains (RFC 2606): demo mail goes nowhere. */
    if (chance(s, 50))
        (void)snprintf(p->email, sizeof(p->email), "%s%02d@%s", local,
                       (int)range(s, 1, 99),
                       p->lang == CCA_LANG_RU ? "example.ru" : "example.com");
    else
        (void)snprintf(p->email, sizeof(p->email), "%s@%s", local,
                       chance(s, 50) ? "example.org" : "example.net");
}

/* ---- what customers and operators say -------------------------------------------- */

enum topic { TOPIC_TECH, TOPIC_SALES, TOPIC_COMPLAINT, TOPIC_ANY };

enum text_kind {
    K_OPEN,     /* a customer's first message on a topic (an AI turn) */
    K_MORE,     /* a follow-up on the same topic (an AI turn) */
    K_HUMAN,    /* asks for a person: cca_handoff_wants_human is true */
    K_WAITING,  /* while queued */
    K_OPERATOR, /* to the operator who holds the dialog */
    K_THANKS,   /* ... once it is solved */
};

/* A customer's text; @answer: what an operator answers to a K_OPEN issue. */
struct ctext {
    enum cca_lang lang;
    enum topic topic;
    enum text_kind kind;
    const char *text;
    const char *answer;
};

#define RU CCA_LANG_RU
#define EN CCA_LANG_EN

/* Every customer text; the router sends K_OPEN texts to their topic's agent. */
static const struct ctext ctexts[] = {
    {RU, TOPIC_TECH, K_OPEN, "Не работает интернет с утра, роутер мигает красным",
     "Вижу обрыв на линии у вашего дома, бригада уже выехала: связь вернётся в течение "
     "двух часов."},
    {RU, TOPIC_TECH, K_OPEN, "Не могу войти в личный кабинет, пишет неверный пароль",
     "Пароль сброшен, ссылка для входа отправлена на вашу почту."},
    {RU, TOPIC_TECH, K_OPEN,
     "Очень низкая скорость интернета по вечерам, видео не грузится",
     "Перевели ваш роутер на свободный канал Wi-Fi 5 ГГц, вечером скорость будет в "
     "норме."},
    {RU, TOPIC_TECH, K_OPEN, "Не приходит код подтверждения по СМС",
     "Отправили код повторно. Если не придёт, проверьте, не заблокированы ли короткие "
     "номера."},
    {RU, TOPIC_TECH, K_OPEN, "Приложение не запускается после обновления",
     "Это известная ошибка версии 5.2, исправление уже в магазине приложений: обновите, "
     "пожалуйста."},
    {RU, TOPIC_TECH, K_OPEN, "Wi-Fi постоянно отключается, что делать?",
     "Обновили прошивку роутера удалённо, перезагрузите его, пожалуйста, через пять "
     "минут."},
    {RU, TOPIC_TECH, K_OPEN, "Ошибка 651 при подключении",
     "Порт на вашей линии перезапущен, переподключитесь, пожалуйста: ошибка должна "
     "уйти."},
    {RU, TOPIC_TECH, K_MORE, "Перезагрузил роутер, не помогло", NULL},
    {RU, TOPIC_TECH, K_MORE, "Индикатор всё ещё горит красным", NULL},
    {RU, TOPIC_TECH, K_MORE, "А сколько ждать мастера?", NULL},
    {RU, TOPIC_TECH, K_MORE, "Пароль сбросил, но войти всё равно не могу", NULL},
    {RU, TOPIC_TECH, K_MORE, "Хорошо, попробую, спасибо", NULL},
    {RU, TOPIC_SALES, K_OPEN, "Сколько стоит тариф Профи?",
     "Тариф «Профи» стоит 1990 ₽ "
     "в месяц: скорость до 500 Мбит/с, ТВ включено."},
    {RU, TOPIC_SALES, K_OPEN, "Хочу подключить домашний интернет, какие есть тарифы?",
     "По вашему адресу доступны «Базовый» за 990 ₽ "
     "и «Профи» за 1990 ₽, "
     "подключение бесплатное."},
    {RU, TOPIC_SALES, K_OPEN, "Можно ли добавить ТВ к моему тарифу?",
     "Да, пакет ТВ на 180 каналов добавляется "
     "за 299 ₽ в месяц, "
     "можем подключить прямо сейчас."},
    {RU, TOPIC_SALES, K_OPEN, "Есть ли скидки для пенсионеров?",
     "Для пенсионеров действует скидка 20% на тариф «Базовый», оформим по паспорту."},
    {RU, TOPIC_SALES, K_OPEN, "Как перейти на тариф Бизнес?",
     "Оформили переход на «Бизнес» с первого числа следующего месяца."},
    {RU, TOPIC_SALES, K_MORE, "А есть тариф подешевле?", NULL},
    {RU, TOPIC_SALES, K_MORE, "Какая скорость на тарифе Базовый?", NULL},
    {RU, TOPIC_SALES, K_MORE, "Подключение платное?", NULL},
    {RU, TOPIC_SALES, K_MORE, "Понятно, спасибо за информацию", NULL},
    {RU, TOPIC_COMPLAINT, K_OPEN, "Списали деньги дважды, верните деньги!",
     "Приносим извинения. Повторное списание отменено, деньги вернутся за 3 рабочих "
     "дня."},
    {RU, TOPIC_COMPLAINT, K_OPEN, "Я хочу подать жалобу на ваш сервис",
     "Ваша жалоба зарегистрирована под номером 58213, ответ придёт в течение суток."},
    {RU, TOPIC_COMPLAINT, K_OPEN,
     "Третий день без интернета, это безобразие! Требую компенсацию",
     "Приносим извинения. Начислили компенсацию за дни без связи, она будет в следующем "
     "счёте."},
    {RU, TOPIC_COMPLAINT, K_OPEN,
     "Позовите руководителя, меня не устраивает обслуживание",
     "Я старший специалист смены. Расскажите, пожалуйста, что случилось: разберусь "
     "лично."},
    {RU, TOPIC_COMPLAINT, K_OPEN,
     "Буду жаловаться в Роспотребнадзор, верните деньги за месяц",
     "Понимаю ваше недовольство. Оформили возврат абонентской платы за месяц."},
    {RU, TOPIC_ANY, K_HUMAN, "Позовите оператора, пожалуйста", NULL},
    {RU, TOPIC_ANY, K_HUMAN, "Хочу поговорить с живым человеком", NULL},
    {RU, TOPIC_ANY, K_HUMAN, "Соедините с оператором", NULL},
    {RU, TOPIC_ANY, K_WAITING, "Я ещё жду, скоро ответит оператор?", NULL},
    {RU, TOPIC_ANY, K_WAITING, "Есть кто-нибудь?", NULL},
    {RU, TOPIC_ANY, K_OPERATOR, "Спасибо, сейчас проверю", NULL},
    {RU, TOPIC_ANY, K_OPERATOR, "Да, договор оформлен на меня", NULL},
    {RU, TOPIC_ANY, K_THANKS, "Всё заработало, спасибо!", NULL},
    {RU, TOPIC_ANY, K_OPERATOR, "Хорошо, буду ждать", NULL},
    {RU, TOPIC_ANY, K_OPERATOR, "А это надолго?", NULL},
    {RU, TOPIC_ANY, K_THANKS, "Понятно, спасибо за помощь", NULL},
    {RU, TOPIC_ANY, K_THANKS, "Спасибо, вопрос решён", NULL},
    {RU, TOPIC_ANY, K_OPERATOR, "Номер договора 4817-2291", NULL},
    {EN, TOPIC_TECH, K_OPEN,
     "My internet has been down since morning, the router light is red",
     "I can see a cable fault near your building; a crew is on the way and service is "
     "back within two hours."},
    {EN, TOPIC_TECH, K_OPEN, "I can't log in to my account, it says wrong password",
     "Your password is reset; the login link is in your e-mail."},
    {EN, TOPIC_TECH, K_OPEN, "The connection is very slow in the evenings",
     "I have moved your router to a free 5 GHz Wi-Fi channel; evenings should be fast "
     "again."},
    {EN, TOPIC_TECH, K_OPEN, "I don't receive the SMS verification code",
     "I have sent the code again; if it does not arrive, "
     "check that short numbers are not blocked."},
    {EN, TOPIC_TECH, K_OPEN, "The app crashes on startup after the update",
     "That is a known bug in version 5.2; the fix is in the app store, please update."},
    {EN, TOPIC_TECH, K_OPEN, "Wi-Fi keeps disconnecting, what should I do?",
     "I have updated your router's firmware remotely; please restart it in five "
     "minutes."},
    {EN, TOPIC_TECH, K_MORE, "I restarted the router, it didn't help", NULL},
    {EN, TOPIC_TECH, K_MORE, "The light is still red", NULL},
    {EN, TOPIC_TECH, K_MORE, "How long until a technician comes?", NULL},
    {EN, TOPIC_TECH, K_MORE, "OK, I'll try that, thanks", NULL},
    {EN, TOPIC_SALES, K_OPEN, "How much does the Pro plan cost?",
     "The Pro plan is 1990 ₽ a month: up to 500 Mbit/s, TV included."},
    {EN, TOPIC_SALES, K_OPEN, "I want home internet, what plans do you have?",
     "At your address you can have Basic for 990 ₽ "
     "or Pro for 1990 ₽; installation is free."},
    {EN, TOPIC_SALES, K_OPEN, "Can I add TV to my plan?",
     "Yes, the 180-channel TV pack is 299 ₽ a month; I can add it right now."},
    {EN, TOPIC_SALES, K_OPEN, "Do you have discounts for students?",
     "Students get 20% off the Basic plan with a valid student card."},
    {EN, TOPIC_SALES, K_OPEN, "How do I switch to the Business plan?",
     "Done: you move to Business on the first day of next month."},
    {EN, TOPIC_SALES, K_MORE, "Is there a cheaper plan?", NULL},
    {EN, TOPIC_SALES, K_MORE, "What speed does the Basic plan have?", NULL},
    {EN, TOPIC_SALES, K_MORE, "Got it, thanks for the information", NULL},
    {EN, TOPIC_COMPLAINT, K_OPEN, "You charged me twice, I want a refund!",
     "We apologise. The double charge is cancelled; the money is back within 3 working "
     "days."},
    {EN, TOPIC_COMPLAINT, K_OPEN, "I want to file a complaint about your service",
     "Your complaint is registered as number 58213; you will hear from us within a day."},
    {EN, TOPIC_COMPLAINT, K_OPEN,
     "Three days without internet, this is outrageous! I demand compensation",
     "We apologise. Compensation for the days without service is on your next bill."},
    {EN, TOPIC_COMPLAINT, K_OPEN,
     "I want to speak to a manager, I am not happy with the service",
     "I am the senior specialist on shift. Please tell me what happened and I will "
     "handle it myself."},
    {EN, TOPIC_ANY, K_HUMAN, "Talk to a human please", NULL},
    {EN, TOPIC_ANY, K_HUMAN, "I want a real person", NULL},
    {EN, TOPIC_ANY, K_HUMAN, "Can I talk to an operator?", NULL},
    {EN, TOPIC_ANY, K_WAITING, "I'm still waiting, is anyone there?", NULL},
    {EN, TOPIC_ANY, K_WAITING, "How long will I have to wait?", NULL},
    {EN, TOPIC_ANY, K_OPERATOR, "Thanks, let me check", NULL},
    {EN, TOPIC_ANY, K_OPERATOR, "Yes, the contract is in my name", NULL},
    {EN, TOPIC_ANY, K_THANKS, "It works now, thank you!", NULL},
    {EN, TOPIC_ANY, K_OPERATOR, "OK, I'll wait", NULL},
    {EN, TOPIC_ANY, K_OPERATOR, "How long will it take?", NULL},
    {EN, TOPIC_ANY, K_THANKS, "Got it, thanks for your help", NULL},
    {EN, TOPIC_ANY, K_THANKS, "Thanks, that solved it", NULL},
    {EN, TOPIC_ANY, K_OPERATOR, "My contract number is 4817-2291", NULL},
};

#define NTEXTS CCA_ARRAY_SIZE(ctexts)

enum otext_kind { O_ANSWER, O_MORE, O_BYE, O_HANDBACK };

struct otext {
    enum cca_lang lang;
    enum topic topic;
    enum otext_kind kind;
    const char *text;
};

/* What operators write besides the answer to the issue (ctext.answer). */
static const struct otext otexts[] = {
    {RU, TOPIC_TECH, O_ANSWER,
     "Линию проверили, порт перезапущен: попробуйте, пожалуйста, снова."},
    {RU, TOPIC_TECH, O_MORE,
     "Оформили заявку на выезд мастера, он позвонит вам сегодня до 18:00."},
    {RU, TOPIC_TECH, O_MORE, "Вижу, что линия снова в порядке. Всё работает?"},
    {RU, TOPIC_TECH, O_MORE, "Проверьте, пожалуйста, ещё раз через пару минут."},
    {RU, TOPIC_TECH, O_MORE, "Если проблема повторится, напишите нам: сразу поможем."},
    {RU, TOPIC_SALES, O_ANSWER, "Подберём тариф под ваш бюджет, подключение бесплатное."},
    {RU, TOPIC_SALES, O_MORE,
     "Договор отправлен на вашу почту, подписать его можно в личном кабинете."},
    {RU, TOPIC_SALES, O_MORE, "Смена тарифа вступит в силу с первого числа месяца."},
    {RU, TOPIC_SALES, O_MORE, "Первый месяц на новом тарифе будет со скидкой 50%."},
    {RU, TOPIC_SALES, O_MORE, "Могу также рассказать про мобильную связь в пакете."},
    {RU, TOPIC_COMPLAINT, O_ANSWER,
     "Приносим извинения. Передали ваш случай руководителю отдела, с вами свяжутся "
     "сегодня."},
    {RU, TOPIC_COMPLAINT, O_MORE, "Ещё раз приносим извинения за неудобства."},
    {RU, TOPIC_COMPLAINT, O_MORE, "Подтверждение придёт вам на почту в течение часа."},
    {RU, TOPIC_COMPLAINT, O_MORE, "Мы взяли ваш случай на особый контроль."},
    {RU, TOPIC_ANY, O_BYE, "Могу ещё чем-нибудь помочь? Хорошего дня!"},
    {RU, TOPIC_ANY, O_BYE, "Спасибо за обращение, всего доброго!"},
    {RU, TOPIC_ANY, O_HANDBACK,
     "Дальше вам поможет виртуальный помощник: он ответит на вопросы о тарифах."},
    {EN, TOPIC_TECH, O_ANSWER,
     "I have checked the line and reset the port, please try now."},
    {EN, TOPIC_TECH, O_MORE,
     "I have booked a technician visit; they will call you today before 6 pm."},
    {EN, TOPIC_TECH, O_MORE, "The line looks fine again. Does everything work?"},
    {EN, TOPIC_TECH, O_MORE, "Please check again in a couple of minutes."},
    {EN, TOPIC_TECH, O_MORE, "If it happens again, just write to us and we will help."},
    {EN, TOPIC_SALES, O_ANSWER,
     "We will find a plan for your budget; installation is free."},
    {EN, TOPIC_SALES, O_MORE, "The contract is in your e-mail; you can sign it online."},
    {EN, TOPIC_SALES, O_MORE, "The new plan starts on the first day of next month."},
    {EN, TOPIC_SALES, O_MORE, "Your first month on the new plan is half price."},
    {EN, TOPIC_SALES, O_MORE, "I can also tell you about mobile plans in a bundle."},
    {EN, TOPIC_COMPLAINT, O_ANSWER,
     "We apologise. Your case is with the head of the department; they will call you "
     "today."},
    {EN, TOPIC_COMPLAINT, O_MORE, "Once again, sorry for the trouble."},
    {EN, TOPIC_COMPLAINT, O_MORE,
     "You will get a confirmation by e-mail within the hour."},
    {EN, TOPIC_COMPLAINT, O_MORE, "We are keeping a close eye on your case."},
    {EN, TOPIC_ANY, O_BYE, "Anything else I can help with? Have a nice day!"},
    {EN, TOPIC_ANY, O_BYE, "Thank you for contacting us, goodbye!"},
    {EN, TOPIC_ANY, O_HANDBACK,
     "Our virtual assistant will take it from here and can answer questions about "
     "plans."},
};

#define NOTEXTS CCA_ARRAY_SIZE(otexts)

/* Greetings: [lang] = {before the operator's first name, after it}. */
static const char *const greeting[CCA_LANG__COUNT][2] = {
    [CCA_LANG_EN] = {"Hello! My name is ", ", I will sort this out for you."},
    [CCA_LANG_RU] = {"Здравствуйте! Меня зовут ", ", сейчас разберусь с вашим вопросом."},
};

/* Rating comments: [lang][0] good (4-5), [1] middling (3), [2] bad (1-2). */
static const char *const comments[CCA_LANG__COUNT][3][3] = {
    [CCA_LANG_RU] = {{"Быстро помогли, спасибо!", "Оператор был очень вежлив",
                      "Всё решили за пару минут"},
                     {"Помогли, но ответа пришлось ждать", "В целом нормально",
                      "Решили не с первого раза"},
                     {"Проблема так и не решена", "Слишком долгое ожидание",
                      "Ответы не по делу"}},
    [CCA_LANG_EN] = {{"Quick help, thanks!", "The operator was very polite",
                      "Sorted out in a couple of minutes"},
                     {"Helped, but I had to wait", "OK overall",
                      "Took more than one try"},
                     {"The problem is still not solved", "Far too long a wait",
                      "The answers missed the point"}},
};

#undef RU
#undef EN

/* ---- the run --------------------------------------------------------------------- */

struct op_info {
    char id[37];
    char token[CCA_OPERATOR_TOKEN_LEN + 1];
    struct person p;
    uint32_t langs;
    uint32_t skills; /* 0: every skill */
    unsigned max_dialogs;
    int64_t created_ms;
    int64_t last_closed_ms;
    unsigned held;      /* open dialogs they hold at the end (<= max_dialogs) */
    int64_t busy_since; /* when they got the last of those */
};

/* One summary row, from a record. */
struct row {
    int64_t created_ms;
    size_t index; /* the dialog's number: the order among equal times */
    char id[37];
    char customer[144];
    uint32_t agents;
    int op; /* the operator who holds it or held it last, -1 */
    enum cca_dialog_status status;
    uint32_t messages;
    int csat;
};

/* The TOP_N earliest rows of a table, and how many there are in all. */
struct top {
    struct row v[TOP_N];
    size_t n;
    size_t total;
};

/* A memoised AI turn: the outcome of cca_turn_start for (text, current agent). */
struct turn_memo {
    bool ready;
    struct cca_turn t;
};

/* A memoised quick answer of the knowledge base to a text (NULL: none). */
struct faq_memo {
    bool ready;
    char *answer;
};

/* The commits in flight, and the first failure. */
struct sink {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned in_flight;
    unsigned long failed;
    struct cca_error err;
};

struct demo {
    const struct cca_config *cfg;
    struct opts o;
    struct cca_router *router;
    struct cca_agents *agents;
    struct cca_store *store;
    struct sink sink;
    int64_t start_ms; /* the window: [start_ms, end_ms) */
    int64_t end_ms;
    int year;
    unsigned seats; /* the operators' max_dialogs, summed: for the queue's ETA */
    struct op_info *ops;
    size_t *ops_by_id; /* indexes of @ops sorted by id */
    struct turn_memo memo[NTEXTS][CCA_AGENT__COUNT + 1];
    struct faq_memo faq[NTEXTS][CCA_LANG__COUNT];
    /* What the summary shows. */
    size_t existing[CCA_STORE_COLL__COUNT];
    size_t by_status[CCA_DIALOG_STATUS__COUNT];
    size_t escalated;
    size_t rated;
    char cust_id[32]; /* the customer and operator whose dialogs are listed */
    char cust_name[144];
    int target_op;
    struct top all, of_customer, of_operator;
};

static void on_committed(void *ctx, cca_rc rc, size_t bytes, const struct cca_error *err)
{
    struct sink *s = ctx;

    (void)bytes;
    pthread_mutex_lock(&s->lock);
    if (rc != CCA_OK && s->failed++ == 0) {
        s->err.code = rc;
        (void)snprintf(s->err.msg, sizeof(s->err.msg), "%s",
                       err != NULL ? err->msg : cca_strerror(rc));
    }
    s->in_flight--;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

/* Queue the write of @doc (borrowed); false once any write failed. */
static bool submit(struct demo *g, enum cca_store_coll coll, const char *id, json_t *doc)
{
    struct sink *s = &g->sink;
    bool ok;

    pthread_mutex_lock(&s->lock);
    while (s->in_flight >= MAX_IN_FLIGHT)
        pthread_cond_wait(&s->cond, &s->lock);
    ok = s->failed == 0;
    if (ok)
        s->in_flight++;
    pthread_mutex_unlock(&s->lock);
    if (ok)
        cca_store_commit(g->store, coll, id, NULL, doc, on_committed, s);
    return ok;
}

/*
 * Documents the store holds that are not in their files yet: the file store's
 * cca_store_dirty_documents gauge (its metrics, the one public view of it);
 * 0 for a backend without one.
 */
static size_t store_backlog(struct cca_store *store)
{
    static const char name[] = "\ncca_store_dirty_documents ";
    char *buf = NULL;
    size_t len = 0;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &len);
    const char *p;

    if (f == NULL)
        return 0;
    cca_store_render_metrics(store, f);
    (void)fclose(f);
    p = buf != NULL ? strstr(buf, name) : NULL;
    if (p != NULL)
        n = (size_t)strtod(p + sizeof(name) - 1, NULL);
    free(buf);
    return n;
}

/* Wait, if the store is BACKLOG_HIGH documents behind, until it catches up. */
static void keep_pace(struct demo *g, size_t submitted)
{
    if (submitted % BACKLOG_EVERY != 0 || store_backlog(g->store) < BACKLOG_HIGH)
        return;
    while (store_backlog(g->store) > BACKLOG_LOW)
        (void)nanosleep(&(struct timespec){.tv_nsec = 2000000}, NULL);
}

static void drain(struct sink *s)
{
    pthread_mutex_lock(&s->lock);
    while (s->in_flight > 0)
        pthread_cond_wait(&s->cond, &s->lock);
    pthread_mutex_unlock(&s->lock);
}

static int by_op_id(const void *a, const void *b, void *ctx)
{
    const struct op_info *ops = ctx;

    return strcmp(ops[*(const size_t *)a].id, ops[*(const size_t *)b].id);
}

/* The index of operator @id, or -1. */
static int op_index(const struct demo *g, const char *id)
{
    size_t lo = 0, hi = g->o.operators;

    while (id != NULL && lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(g->ops[g->ops_by_id[mid]].id, id);

        if (c == 0)
            return (int)g->ops_by_id[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

static void customer_id_of(size_t index, char ret[32])
{
    (void)snprintf(ret, 32, "demo-cust-%04zu", index + 1);
}

static void customer_of(const struct demo *g, size_t index, struct person *ret)
{
    uint64_t s = stream_of(g->o.seed, STREAM_CUSTOMER, index);

    make_person(&s, false, g->year, ret);
}

/* ---- operators and customers ----------------------------------------------------- */

static const enum cca_agent all_agents[] = {CCA_AGENT_TECH_SUPPORT, CCA_AGENT_SALES,
                                            CCA_AGENT_SUPERVISOR};

/* Operator @j: operator 0 speaks both languages with every skill, so any dialog
 * has someone to go to (the service would keep it queued otherwise). */
static void make_operator(struct demo *g, size_t j, struct op_info *op)
{
    uint64_t s = stream_of(g->o.seed, STREAM_OPERATOR, j);

    uuid_of(&s, op->id);
    make_person(&s, true, g->year, &op->p);
    op->langs = CCA_OPERATOR_LANG_BIT(op->p.lang);
    if (j == 0 || chance(&s, op->p.lang == CCA_LANG_RU ? 40 : 30))
        op->langs =
            CCA_OPERATOR_LANG_BIT(CCA_LANG_RU) | CCA_OPERATOR_LANG_BIT(CCA_LANG_EN);
    op->skills = 0;
    if (j > 0 && !chance(&s, 35)) {
        size_t n = (size_t)range(&s, 1, 2);

        for (size_t k = 0; k < n; k++)
            op->skills |= CCA_OPERATOR_SKILL_BIT(PICK(&s, all_agents));
    }
    op->max_dialogs = j == 0 ? 5 : (unsigned)range(&s, 2, 6);
    op->created_ms = g->start_ms - range(&s, 30, 400) * DAY_MS;
    op->created_ms -= range(&s, 0, DAY_MS - 1); /* one draw per statement: sequenced */
}

static bool can_take(const struct op_info *op, enum cca_lang lang, enum cca_agent skill,
                     bool seat)
{
    return (!seat || op->held < op->max_dialogs) &&
           (op->langs & CCA_OPERATOR_LANG_BIT(lang)) != 0 &&
           (op->skills == 0 || skill == CCA_AGENT_NONE ||
            (op->skills & CCA_OPERATOR_SKILL_BIT(skill)) != 0);
}

/*
 * An operator who may take a dialog in @lang needing @skill, other than @except;
 * with @seat, one who still has a free seat for a dialog left open. -1 if none
 * (never without @seat and @except: operator 0 takes anything).
 */
static int pick_operator(struct demo *g, uint64_t *s, enum cca_lang lang,
                         enum cca_agent skill, int except, bool seat)
{
    size_t n = 0, k;

    for (size_t j = 0; j < g->o.operators; j++)
        n += (int)j != except && can_take(&g->ops[j], lang, skill, seat);
    if (n == 0)
        return except < 0 && !seat ? 0 : -1;
    k = below(s, n);
    for (size_t j = 0; j < g->o.operators; j++) {
        if ((int)j != except && can_take(&g->ops[j], lang, skill, seat) && k-- == 0)
            return (int)j;
    }
    return -1;
}

static json_t *operator_doc(const struct op_info *op, const char *hash)
{
    struct cca_operator_reg reg = {
        .name = (char *)op->p.name,
        .languages = op->langs,
        .skills = op->skills,
        .max_dialogs = op->max_dialogs,
        .profile = json_pack("{s:s, s:s, s:s, s:s, s:i}", "full_name", op->p.full_name,
                             "city", op->p.city, "birth_date", op->p.birth_date,
                             "position", op->p.position, "experience", op->p.experience),
    };
    json_t *doc = cca_operator_new_doc(op->id, &reg, hash, op->created_ms);

    json_decref(reg.profile);
    if (op->last_closed_ms > 0) {
        json_t *next =
            cca_operator_with_times(doc, 0, op->last_closed_ms, op->last_closed_ms);

        json_decref(doc);
        doc = next;
    }
    if (op->held > 0) {
        /* Busy, not offline: going offline hands every open dialog back to the
         * queue (docs/OPERATORS.md), so an offline operator holds none. */
        json_t *next = cca_operator_with_status(
            doc, CCA_OPERATOR_BUSY,
            op->busy_since > op->last_closed_ms ? op->busy_since : op->last_closed_ms);

        json_decref(doc);
        doc = next;
    }
    return doc;
}

static json_t *customer_doc(const struct demo *g, size_t index, const char *customer_id)
{
    uint64_t s = stream_of(g->o.seed, STREAM_CUSTOMER, index);
    struct person p;
    struct cca_customer_fields f = {0};
    int64_t created;
    json_t *doc;

    make_person(&s, false, g->year, &p);
    created = g->start_ms - range(&s, 1, 365) * DAY_MS;
    created -= range(&s, 0, DAY_MS - 1);
    f.set = CCA_CUSTOMER_F_FULL_NAME | CCA_CUSTOMER_F_CITY | CCA_CUSTOMER_F_BIRTH_DATE |
            CCA_CUSTOMER_F_POSITION | CCA_CUSTOMER_F_EXPERIENCE | CCA_CUSTOMER_F_PHONE |
            CCA_CUSTOMER_F_EMAIL | CCA_CUSTOMER_F_LANGUAGE;
    f.full_name = p.full_name;
    f.city = p.city;
    f.birth_date = p.birth_date;
    f.position = p.position;
    f.experience = json_integer(p.experience);
    f.phone = p.phone;
    f.email = p.email;
    f.language = (char *)cca_lang_code(p.lang);
    doc = cca_customer_merge(NULL, customer_id, &f, false, created);
    json_decref(f.experience);
    return doc;
}

/* ---- one dialog ------------------------------------------------------------------ */

/* The close reasons: as a client, an operator or the inactivity sweep give them. */
enum close_reason { CR_RESOLVED, CR_CUSTOMER_LEFT, CR_TIMEOUT, CR_MANUAL };

static const char *const close_reasons[] = {"resolved", "customer_left",
                                            "inactivity_timeout", "manual"};

/* How a dialog first leaves the AI (record.h's triggers). */
enum escalation { ESC_NONE, ESC_REQUEST, ESC_SUPERVISOR, ESC_DEGRADED, ESC_API };

/* What an open dialog is left as. */
enum open_state { OPEN_ACTIVE, OPEN_QUEUED, OPEN_ASSIGNED_NEW, OPEN_ASSIGNED };

struct dlg {
    struct demo *g;
    uint64_t s;
    size_t index;
    json_t *doc;
    char id[37];
    int64_t t; /* the dialog's clock, Unix ms */
    enum cca_lang lang;
    enum topic topic;
    int last_text;       /* the last AI-turn text, -1 */
    int issue;           /* the last K_OPEN text: what an operator answers, -1 */
    int op;              /* the operator who holds it, -1 */
    bool replied;        /* ... has answered since they got it */
    int64_t assigned_ms; /* ... since */
    bool hold;           /* it stays open with an operator: only one with a free seat */
    unsigned turns;
    bool said[NTEXTS]; /* texts used already: nobody repeats themselves */
    bool wrote[NOTEXTS];
    bool wrote_answer; /* the answer to @issue was given */
};

static void set_doc(struct dlg *d, json_t *next)
{
    json_decref(d->doc);
    d->doc = next;
}

static void later(struct dlg *d, int64_t lo_s, int64_t hi_s)
{
    d->t += range(&d->s, lo_s * 1000, hi_s * 1000);
}

/* Text @i is of @kind, in the dialog's language, on @topic, and (@fresh) unsaid. */
static bool text_fits(const struct dlg *d, size_t i, enum text_kind kind,
                      enum topic topic, bool fresh)
{
    return ctexts[i].lang == d->lang && ctexts[i].kind == kind &&
           (topic == TOPIC_ANY || ctexts[i].topic == topic) && !(fresh && d->said[i]);
}

/* A text of @kind in the dialog's language on @topic (TOPIC_ANY: any), unsaid if
 * one is left. */
static int pick_text(struct dlg *d, enum text_kind kind, enum topic topic)
{
    bool fresh = true;
    size_t n = 0, k;

    for (size_t i = 0; i < NTEXTS; i++)
        n += text_fits(d, i, kind, topic, fresh);
    if (n == 0) {
        fresh = false;
        for (size_t i = 0; i < NTEXTS; i++)
            n += text_fits(d, i, kind, topic, fresh);
    }
    k = below(&d->s, n);
    for (size_t i = 0; i < NTEXTS; i++) {
        if (text_fits(d, i, kind, topic, fresh) && k-- == 0) {
            d->said[i] = true;
            return (int)i;
        }
    }
    return 0;
}

static bool otext_fits(const struct dlg *d, size_t i, enum otext_kind kind,
                       enum topic topic, bool fresh)
{
    return otexts[i].lang == d->lang && otexts[i].kind == kind &&
           otexts[i].topic == topic && !(fresh && d->wrote[i]);
}

/* An operator's text of @kind, on the dialog's topic, unwritten if one is left. */
static const char *pick_otext(struct dlg *d, enum otext_kind kind)
{
    enum topic topic = kind == O_BYE || kind == O_HANDBACK ? TOPIC_ANY : d->topic;
    bool fresh = true;
    size_t n = 0, k;

    for (size_t i = 0; i < NOTEXTS; i++)
        n += otext_fits(d, i, kind, topic, fresh);
    if (n == 0) {
        fresh = false;
        for (size_t i = 0; i < NOTEXTS; i++)
            n += otext_fits(d, i, kind, topic, fresh);
    }
    k = below(&d->s, n);
    for (size_t i = 0; i < NOTEXTS; i++) {
        if (otext_fits(d, i, kind, topic, fresh) && k-- == 0) {
            d->wrote[i] = true;
            return otexts[i].text;
        }
    }
    return "";
}

/* The service's turn (router, offline responder) for text @ti after agent @current. */
static const struct cca_turn *turn_of(struct demo *g, int ti, enum cca_agent current)
{
    struct turn_memo *m = &g->memo[ti][(int)current + 1];

    if (!m->ready) {
        struct cca_turn_env env = {
            .cfg = g->cfg, .router = g->router, .agents = g->agents, .llm = NULL};
        const char *text = ctexts[ti].text;
        json_t *doc = NULL;

        /* The turn reads only the current agent of the dialog (no LLM history). */
        if (current != CCA_AGENT_NONE)
            doc = json_pack("{s:s}", "current_agent", cca_agent_name(current));
        (void)cca_turn_start(&m->t, &env, text, strlen(text), doc, 0, NULL, NULL);
        json_decref(doc);
        m->ready = true;
    }
    return &m->t;
}

/* A customer message answered by the AI (finalize_turn in engine.c). */
static void ai_turn(struct dlg *d, int ti, bool degraded)
{
    const struct cca_turn *t = turn_of(d->g, ti, cca_dialog_get_agent(d->doc));
    struct cca_dialog_turn dt = {0};
    char cid[37], aid[37];
    size_t reply_len;
    int64_t wait_ms;
    json_t *doc;

    uuid_of(&d->s, cid);
    uuid_of(&d->s, aid);
    cca_turn_to_dialog(t, &dt);
    reply_len = strlen(t->reply);
    if (degraded) {
        /* The LLM did not answer within LLM_TIMEOUT_S: the offline reply went out. */
        dt.tokens = 0;
        dt.latency_ms = (int64_t)(fmin(d->g->cfg->llm_timeout_s, 60.0) * 1000.0) +
                        range(&d->s, 0, 400);
        dt.degraded = true;
    } else {
        dt.tokens =
            260 + 90 * (long)d->turns + (long)reply_len / 3 + range(&d->s, 0, 240);
        dt.latency_ms = 600 + (int64_t)reply_len * 3 + range(&d->s, 0, 2600);
    }
    wait_ms = dt.latency_ms + range(&d->s, 4, 90);
    dt.customer_msg_id = cid;
    dt.agent_msg_id = aid;
    dt.received_ms = d->t;
    dt.replied_ms = d->t + wait_ms;
    dt.processing_s = (double)wait_ms / 1000.0;
    doc = cca_dialog_with_turn(d->doc, &dt);
    set_doc(d, cca_dialog_with_language(doc, cca_lang_code(t->lang)));
    json_decref(doc);
    d->t = dt.replied_ms;
    d->last_text = ti;
    if (ctexts[ti].kind == K_OPEN)
        d->issue = ti;
    d->turns++;
}

/* The next AI turn on the dialog's topic; now and then the customer changes it. */
static void next_turn(struct dlg *d)
{
    enum text_kind kind = d->turns == 0 ? K_OPEN : K_MORE;

    if (d->turns > 0 && d->topic != TOPIC_COMPLAINT && chance(&d->s, 15)) {
        d->topic = d->topic == TOPIC_TECH ? TOPIC_SALES : TOPIC_TECH;
        kind = K_OPEN;
    }
    ai_turn(d, pick_text(d, kind, d->topic), false);
}

static void add_message(struct dlg *d, const char *role, const char *text, int op,
                        const char *kind)
{
    char id[37];
    struct cca_dialog_message m = {.id = id,
                                   .role = role,
                                   .content = text,
                                   .kind = kind,
                                   .operator_id = op >= 0 ? d->g->ops[op].id : NULL,
                                   .operator_name = op >= 0 ? d->g->ops[op].p.name : NULL,
                                   .at_ms = d->t};

    uuid_of(&d->s, id);
    set_doc(d, cca_dialog_with_message(d->doc, &m));
}

/*
 * A queue notice of @kind: @what's text (cca_handoff_notice) with the position
 * and, with @wait, the estimated wait when one is known (handoff.c's queued_text).
 */
static void queue_notice(struct dlg *d, const char *what, const char *kind,
                         size_t position, bool with_wait)
{
    double eta = cca_assign_eta_s(position, d->g->seats, -1.0,
                                  (double)d->g->cfg->queue_default_handle_s);
    char text[512];
    size_t n;

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    n = (size_t)snprintf(text, sizeof(text), cca_handoff_notice(what, d->lang), position);
    if (with_wait && eta >= 0 && isfinite(eta) && n < sizeof(text)) {
        char wait[32];
        long min = (long)ceil(eta / 60.0);

        (void)snprintf(wait, sizeof(wait), d->lang == CCA_LANG_RU ? "%ld мин" : "%ld min",
                       min < 1 ? 1 : min);
        (void)snprintf(text + n, sizeof(text) - n, cca_handoff_notice("wait", d->lang),
                       wait);
    }
#pragma GCC diagnostic pop
    add_message(d, "system", text, -1, kind);
}

/* A change of owner with its notice to the customer (cca_handoff_apply). */
static void move(struct dlg *d, enum cca_owner_event ev, int op, const char *actor,
                 const char *reason)
{
    enum cca_owner from = cca_dialog_get_owner(d->doc, NULL);
    struct cca_dialog_transition t = {
        .event = ev,
        .from = from,
        .operator_id = op >= 0 ? d->g->ops[op].id : NULL,
        .operator_name = op >= 0 ? d->g->ops[op].p.name : NULL,
        .prev_operator_id =
            from == CCA_OWNER_OPERATOR && d->op >= 0 ? d->g->ops[d->op].id : NULL,
        .actor = actor,
        .reason = reason,
        .requeued = ev == CCA_OWNER_EV_REQUEUE,
        .queue_seq = (uint64_t)d->index + 1,
        .at_ms = d->t};
    char text[512];

    (void)cca_owner_next(from, ev, &t.to);
    set_doc(d, cca_dialog_with_transition(d->doc, &t));
    d->op = op;
    d->replied = false;
    d->assigned_ms = d->t;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    switch (ev) {
        case CCA_OWNER_EV_ENQUEUE:
        case CCA_OWNER_EV_REQUEUE:
            /* Busy hours: a few dialogs ahead of this one. */
            if (ev == CCA_OWNER_EV_ENQUEUE)
                queue_notice(d, "queued", "queue", (size_t)range(&d->s, 1, 6), true);
            else
                queue_notice(d, "requeued", "requeued", (size_t)range(&d->s, 1, 3), true);
            break;
        case CCA_OWNER_EV_ASSIGN:
        case CCA_OWNER_EV_TRANSFER:
            (void)snprintf(
                text, sizeof(text),
                cca_handoff_notice(ev == CCA_OWNER_EV_ASSIGN ? "assigned" : "transferred",
                                   d->lang),
                d->g->ops[op].p.name);
            add_message(d, "system", text, -1,
                        ev == CCA_OWNER_EV_ASSIGN ? "assigned" : "transferred");
            break;
        case CCA_OWNER_EV_HANDBACK:
            add_message(d, "system", cca_handoff_notice("handed_back", d->lang), -1,
                        "handed_back");
            break;
        default:
            break;
    }
#pragma GCC diagnostic pop
}

/* The knowledge base's quick answer to text @ti in @lang (borrowed), or NULL. */
static const char *faq_of(struct demo *g, int ti, enum cca_lang lang)
{
    struct faq_memo *m = &g->faq[ti][lang];
    const char *text = ctexts[ti].text;

    if (!m->ready) {
        struct cca_route route;
        enum cca_agent agent;

        /* The question's topic: tech support or sales, by the keyword scores. */
        cca_router_route(g->router, text, strlen(text), CCA_AGENT_NONE, &route);
        agent = route.scores[CCA_AGENT_SALES] > route.scores[CCA_AGENT_TECH_SUPPORT]
                    ? CCA_AGENT_SALES
                    : CCA_AGENT_TECH_SUPPORT;
        if (route.scores[agent] > 0)
            m->answer = cca_agents_kb_answer(g->agents, agent, lang, text, strlen(text));
        m->ready = true;
    }
    return m->answer;
}

/*
 * A queued customer's quick answer (engine.c's queue_faq): the knowledge-base
 * entry for the request or, when it only asks for a person, the message before.
 */
static void queue_faq(struct dlg *d, int request)
{
    const char *answer = faq_of(d->g, request, d->lang);

    if (answer == NULL && d->last_text >= 0)
        answer = faq_of(d->g, d->last_text, d->lang);
    if (answer != NULL)
        add_message(d, "system", answer, -1, "faq");
}

/* The operator who holds the dialog writes; their first answer sets "replied". */
static void operator_says(struct dlg *d, const char *text)
{
    add_message(d, "operator", text, d->op, NULL);
    if (!d->replied) {
        set_doc(d, cca_dialog_with_replied(d->doc));
        d->replied = true;
    }
}

/* An operator's first words: who they are and the answer to the customer's issue. */
static void operator_greets(struct dlg *d)
{
    const struct person *p = &d->g->ops[d->op].p;
    char text[512];

    (void)snprintf(text, sizeof(text), "%s%s%s %s", greeting[d->lang][0],
                   d->lang == p->lang ? p->first : p->first_lat, greeting[d->lang][1],
                   d->issue >= 0 && !d->wrote_answer ? ctexts[d->issue].answer
                                                     : pick_otext(d, O_ANSWER));
    d->wrote_answer = d->issue >= 0;
    operator_says(d, text);
}

/* Closed (engine.c CCA_OP_CLOSE): a dialog the desk held tells the customer. */
static void close_dialog(struct dlg *d, enum close_reason why)
{
    bool desk_held = cca_dialog_get_owner(d->doc, NULL) != CCA_OWNER_AGENT;

    switch (why) {
        case CR_RESOLVED:
            later(d, 20, 300);
            break;
        case CR_CUSTOMER_LEFT:
            later(d, 120, 1200);
            break;
        case CR_TIMEOUT:
            /* The sweep runs every few seconds after DIALOG_INACTIVITY_TIMEOUT_S. */
            d->t += (int64_t)(d->g->cfg->dialog_inactivity_timeout_s < 7200
                                  ? d->g->cfg->dialog_inactivity_timeout_s
                                  : 7200) *
                        1000 +
                    range(&d->s, 0, 60000);
            break;
        default:
            later(d, 60, 1800);
            break;
    }
    set_doc(d, cca_dialog_closed(d->doc, close_reasons[why], d->t));
    if (desk_held) {
        add_message(d, "system", cca_handoff_notice("closing", d->lang), -1, "closing");
        add_message(d, "system", cca_handoff_notice("csat", d->lang), -1, "csat");
    }
    if (d->op >= 0 && d->g->ops[d->op].last_closed_ms < d->t)
        d->g->ops[d->op].last_closed_ms = d->t;
}

/* CSAT, skewed to 4 and 5 as real ratings are; a comment now and then. */
static void rate(struct dlg *d)
{
    static const unsigned weights[] = {6, 7, 12, 30, 45}; /* scores 1..5 */
    int score = (int)weighted(&d->s, weights, CCA_ARRAY_SIZE(weights)) + 1;
    const char *comment = NULL;

    if (chance(&d->s, 35)) {
        int band = score >= 4 ? 0 : score == 3 ? 1 : 2;

        comment = comments[d->lang][band][below(&d->s, 3)];
    }
    later(d, 5, 1200);
    set_doc(d, cca_dialog_with_rating(d->doc, score, comment, d->t));
}

/*
 * The escalation: the AI turns before it and the move away from the AI, to an
 * operator at once when @direct and one can take it. True when one did.
 */
static bool escalate(struct dlg *d, enum escalation why, bool direct)
{
    const char *reason = NULL;
    const char *actor = "client";
    enum cca_agent skill;
    int request = -1;
    int op;

    switch (why) {
        case ESC_REQUEST:
            /* human_request: the message is stored, no AI turn answers it. */
            for (unsigned n = how_many(&d->s, 3); n > 0; n--) {
                next_turn(d);
                later(d, 15, 240);
            }
            request = pick_text(d, K_HUMAN, TOPIC_ANY);
            set_doc(d, cca_dialog_with_language(d->doc, cca_lang_code(d->lang)));
            add_message(d, "customer", ctexts[request].text, -1, NULL);
            reason = "customer_request";
            actor = "customer";
            break;
        case ESC_SUPERVISOR:
            if (chance(&d->s, 40)) {
                d->topic = chance(&d->s, 50) ? TOPIC_TECH : TOPIC_SALES;
                next_turn(d);
                later(d, 15, 240);
                d->topic = TOPIC_COMPLAINT;
            }
            ai_turn(d, pick_text(d, K_OPEN, TOPIC_COMPLAINT), false);
            reason = "supervisor";
            /* Only a turn routed to the supervisor triggers it. */
            if (cca_dialog_get_agent(d->doc) != CCA_AGENT_SUPERVISOR)
                why = ESC_API;
            break;
        case ESC_DEGRADED:
            for (unsigned n = (unsigned)range(&d->s, 0, 2); n > 0; n--) {
                next_turn(d);
                later(d, 15, 240);
            }
            ai_turn(d, pick_text(d, d->turns == 0 ? K_OPEN : K_MORE, d->topic), true);
            reason = "degraded";
            break;
        default:
            for (unsigned n = how_many(&d->s, 3); n > 0; n--) {
                next_turn(d);
                later(d, 15, 240);
            }
            break;
    }
    if (why == ESC_API) {
        /* POST /dialogue/{id}/handoff {"to": "human"} by the client or an admin. */
        later(d, 5, 120);
        reason = "api";
        actor = chance(&d->s, 70) ? "client" : "admin";
    }
    skill = cca_dialog_get_agent(d->doc);
    op = direct ? pick_operator(d->g, &d->s, d->lang, skill, -1, d->hold) : -1;
    if (op >= 0) {
        move(d, CCA_OWNER_EV_ASSIGN, op, actor, reason);
        return true;
    }
    move(d, CCA_OWNER_EV_ENQUEUE, -1, actor, reason);
    if (request >= 0)
        queue_faq(d, request);
    return false;
}

/*
 * From the queue to an operator (another than @except if there is one): the
 * backlog sweep, or an operator's pull. False when nobody has a seat (@hold).
 */
static bool assign_from_queue(struct dlg *d, int except)
{
    enum cca_agent skill = cca_dialog_get_agent(d->doc);
    int op = pick_operator(d->g, &d->s, d->lang, skill, except, d->hold);
    char actor[48];

    if (op < 0)
        op = pick_operator(d->g, &d->s, d->lang, skill, -1, d->hold);
    if (op < 0)
        return false;
    if (chance(&d->s, 70)) {
        move(d, CCA_OWNER_EV_ASSIGN, op, "system", "backlog");
    } else {
        (void)snprintf(actor, sizeof(actor), "operator:%s", d->g->ops[op].id);
        move(d, CCA_OWNER_EV_ASSIGN, op, actor, "operator_take");
    }
    return true;
}

/* The whole life of dialog @index into d->doc (a new reference). */
static void make_dialog(struct demo *g, size_t index, struct dlg *d)
{
    static const unsigned esc_w[] = {0, 40, 30, 10, 20}; /* by enum escalation */
    static const unsigned prio_w[] = {5, 80, 12, 3};     /* by enum cca_priority */
    static const unsigned ai_close_w[] = {45, 20, 25, 10};
    static const unsigned op_close_w[] = {60, 10, 15, 15};
    static const unsigned open_w[] = {0, 40, 20, 40}; /* by enum open_state */
    static const char *const channels[] = {"api", "web", "web", "telegram"};
    char cust_id[32];
    struct person cust;
    struct cca_dialog_create c = {0};
    bool closed, direct;
    enum escalation esc = ESC_NONE;
    enum open_state open = OPEN_ACTIVE;
    char actor[48];
    int64_t from;
    size_t ci;

    memset(d, 0, sizeof(*d));
    d->g = g;
    d->index = index;
    d->s = stream_of(g->o.seed, STREAM_DIALOG, index);
    d->op = -1;
    d->last_text = -1;
    d->issue = -1;
    uuid_of(&d->s, d->id);
    ci = (size_t)below(&d->s, g->o.customers);
    customer_id_of(ci, cust_id);
    customer_of(g, ci, &cust);
    d->lang = cust.lang;
    closed = chance(&d->s, 80);
    if (chance(&d->s, 40))
        esc = (enum escalation)weighted(&d->s, esc_w, CCA_ARRAY_SIZE(esc_w));
    if (!closed && esc != ESC_NONE)
        open = (enum open_state)weighted(&d->s, open_w, CCA_ARRAY_SIZE(open_w));
    direct = esc != ESC_NONE && open != OPEN_QUEUED && chance(&d->s, 25);
    d->topic = esc == ESC_SUPERVISOR ? TOPIC_COMPLAINT
               : chance(&d->s, 55)   ? TOPIC_TECH
                                     : TOPIC_SALES;

    /* Open dialogs are recent; every dialog ends before the window does. */
    from = closed ? g->start_ms : g->end_ms - 2 * DAY_MS;
    if (from < g->start_ms)
        from = g->start_ms;
    d->t = range(&d->s, from, g->end_ms - DIALOG_MARGIN_MS - 1);
    c.customer_id = cust_id;
    c.name = cust.full_name;
    c.phone = cust.phone;
    c.email = cust.email;
    c.source = (char *)PICK(&d->s, channels);
    c.priority = (char *)cca_priority_name(
        (enum cca_priority)weighted(&d->s, prio_w, CCA_ARRAY_SIZE(prio_w)));
    d->doc = cca_dialog_new_doc(d->id, &c, d->t);
    later(d, 1, 20);

    if (esc == ESC_NONE) {
        unsigned n = how_many(&d->s, closed ? 4 : 3);

        for (unsigned k = 0; k < n; k++) {
            if (k > 0)
                later(d, 15, 240);
            next_turn(d);
        }
        if (closed)
            close_dialog(d, (enum close_reason)weighted(&d->s, ai_close_w,
                                                        CCA_ARRAY_SIZE(ai_close_w)));
        goto rate;
    }
    d->hold = open == OPEN_ASSIGNED || open == OPEN_ASSIGNED_NEW;
    if (!escalate(d, esc, direct)) {
        int64_t wait_s = range(&d->s, 5, 1200);

        if (wait_s > 90 && chance(&d->s, 25)) {
            /* A customer who writes while queued hears their position again. */
            d->t += range(&d->s, 30000, wait_s * 1000 - 20000);
            add_message(d, "customer", ctexts[pick_text(d, K_WAITING, TOPIC_ANY)].text,
                        -1, NULL);
            queue_notice(d, "position", "queue", (size_t)range(&d->s, 1, 4), false);
            wait_s = range(&d->s, 10, 600);
        }
        if (open == OPEN_QUEUED)
            goto out;
        if (closed && chance(&d->s, 10)) {
            close_dialog(d, CR_CUSTOMER_LEFT); /* gave up waiting */
            goto rate;
        }
        d->t += wait_s * 1000;
        if (!assign_from_queue(d, -1))
            goto out; /* every seat taken: it waits */
    }
    if (chance(&d->s, 6) && g->o.operators > 1) {
        /* No answer within OPERATOR_REPLY_TIMEOUT_S: back to the head of the queue. */
        int prev = d->op;

        d->t += (int64_t)(g->cfg->operator_reply_timeout_s < 3600
                              ? g->cfg->operator_reply_timeout_s
                              : 3600) *
                    1000 +
                range(&d->s, 0, 5000);
        move(d, CCA_OWNER_EV_REQUEUE, -1, "system", "reply_timeout");
        later(d, 5, 300);
        if (!assign_from_queue(d, prev))
            goto out;
    }
    if (open == OPEN_ASSIGNED_NEW)
        goto out;
    later(d, 10, 180);
    operator_greets(d);
    for (unsigned n = how_many(&d->s, 3); n > 0; n--) {
        later(d, 20, 240);
        add_message(d, "customer", ctexts[pick_text(d, K_OPERATOR, TOPIC_ANY)].text, -1,
                    NULL);
        if (open == OPEN_ASSIGNED && n == 1 && chance(&d->s, 50))
            goto out; /* the operator has not answered yet */
        later(d, 15, 180);
        operator_says(d, pick_otext(d, O_MORE));
    }
    if (open == OPEN_ASSIGNED)
        goto out;
    if (chance(&d->s, 12)) {
        /* POST /dialogue/{id}/handoff {"to": "operator"} by the operator. */
        int to =
            pick_operator(g, &d->s, d->lang, cca_dialog_get_agent(d->doc), d->op, false);

        if (to >= 0) {
            later(d, 10, 120);
            (void)snprintf(actor, sizeof(actor), "operator:%s", g->ops[d->op].id);
            move(d, CCA_OWNER_EV_TRANSFER, to, actor, "transfer");
            later(d, 15, 240);
            operator_greets(d);
        }
    } else if (chance(&d->s, 14)) {
        /* POST /dialogue/{id}/handoff {"to": "ai"} by the operator. */
        later(d, 10, 120);
        operator_says(d, pick_otext(d, O_HANDBACK));
        (void)snprintf(actor, sizeof(actor), "operator:%s", g->ops[d->op].id);
        later(d, 1, 5);
        move(d, CCA_OWNER_EV_HANDBACK, -1, actor, "api");
        if (chance(&d->s, 60)) {
            later(d, 20, 300);
            d->topic = TOPIC_SALES;
            ai_turn(d, pick_text(d, K_OPEN, TOPIC_SALES), false);
        }
        if (closed)
            close_dialog(d, (enum close_reason)weighted(&d->s, ai_close_w,
                                                        CCA_ARRAY_SIZE(ai_close_w)));
        goto rate;
    }
    if (chance(&d->s, 75)) {
        later(d, 20, 240);
        add_message(d, "customer", ctexts[pick_text(d, K_THANKS, TOPIC_ANY)].text, -1,
                    NULL);
    }
    later(d, 10, 120);
    operator_says(d, pick_otext(d, O_BYE));
    close_dialog(
        d, (enum close_reason)weighted(&d->s, op_close_w, CCA_ARRAY_SIZE(op_close_w)));
rate:
    if (closed && chance(&d->s, 70))
        rate(d);
out:
    if (!closed && d->op >= 0) {
        struct op_info *op = &g->ops[d->op];

        op->held++;
        if (op->busy_since < d->assigned_ms)
            op->busy_since = d->assigned_ms;
    }
}

/* ---- the summary's records ------------------------------------------------------- */

static int row_cmp(const struct row *a, const struct row *b)
{
    if (a->created_ms != b->created_ms)
        return a->created_ms < b->created_ms ? -1 : 1;
    return a->index < b->index ? -1 : a->index > b->index;
}

/* Keep @r among the TOP_N earliest of @t. */
static void top_add(struct top *t, const struct row *r)
{
    size_t i;

    t->total++;
    if (t->n == TOP_N && row_cmp(r, &t->v[TOP_N - 1]) >= 0)
        return;
    i = t->n < TOP_N ? t->n++ : TOP_N - 1;
    while (i > 0 && row_cmp(r, &t->v[i - 1]) < 0) {
        t->v[i] = t->v[i - 1];
        i--;
    }
    t->v[i] = *r;
}

/* Dialog @doc (borrowed) into the counts and tables, through its record. */
static void tally(struct demo *g, json_t *doc, size_t index)
{
    struct cca_record rec;
    struct cca_record_filter f;
    struct row row = {.index = index, .op = -1};

    cca_record_of(doc, &rec);
    if (index == 0 && rec.customer_id != NULL) {
        (void)snprintf(g->cust_id, sizeof(g->cust_id), "%s", rec.customer_id);
        (void)snprintf(g->cust_name, sizeof(g->cust_name), "%s",
                       rec.customer_name != NULL ? rec.customer_name : "");
    }
    row.created_ms = rec.created_ms;
    (void)snprintf(row.id, sizeof(row.id), "%s", rec.dialog_id);
    (void)snprintf(row.customer, sizeof(row.customer), "%s",
                   rec.customer_name != NULL ? rec.customer_name : "-");
    row.agents = rec.agents;
    row.status = rec.status;
    row.messages = rec.messages;
    row.csat = rec.csat;
    if (rec.owner_operator >= 0) {
        row.op = op_index(g, rec.ops[rec.owner_operator].operator_id);
    } else {
        for (size_t k = 0; k < rec.nops; k++) {
            if (rec.ops[k].last_owner)
                row.op = op_index(g, rec.ops[k].operator_id);
        }
    }
    if ((unsigned)rec.status < CCA_DIALOG_STATUS__COUNT)
        g->by_status[rec.status]++;
    g->escalated += rec.trigger != CCA_TRIGGER_NONE;
    g->rated += rec.csat > 0;
    top_add(&g->all, &row);
    /* The first operator anyone met is the one whose dialogs are listed. */
    if (g->target_op < 0 && rec.nops > 0)
        g->target_op = op_index(g, rec.ops[0].operator_id);
    cca_record_filter_init(&f);
    f.customer_id = g->cust_id;
    if (cca_record_matches(&rec, &f))
        top_add(&g->of_customer, &row);
    if (g->target_op >= 0) {
        cca_record_filter_init(&f);
        f.operator_id = g->ops[g->target_op].id;
        if (cca_record_matches(&rec, &f))
            top_add(&g->of_operator, &row);
    }
    cca_record_cleanup(&rec);
}

/* ---- writing --------------------------------------------------------------------- */

static void count_existing(void *ctx, enum cca_store_coll coll, const char *id,
                           json_t *doc, size_t bytes)
{
    struct demo *g = ctx;

    (void)id;
    (void)bytes;
    if ((unsigned)coll < CCA_STORE_COLL__COUNT)
        g->existing[coll]++;
    json_decref(doc);
}

static void report_skipped(void *ctx, const char *what, const char *why)
{
    (void)ctx;
    fprintf(stderr, "demo-data: storage: %s: %s\n", what, why);
}

/* A document that fails its own validation is a bug here: say which, stop. */
static bool check(cca_rc rc, const char *what, const char *id,
                  const struct cca_error *err)
{
    if (rc == CCA_OK)
        return true;
    fprintf(stderr, "demo-data: internal error: %s %s does not validate: %s\n", what, id,
            err->msg);
    return false;
}

/* Every document into the store. Returns a process exit code. */
static int generate(struct demo *g)
{
    struct cca_error err = {0};
    char key[37];
    char hash[65];
    int ret = EXIT_FAILURE;

    for (size_t i = 0; i < g->o.dialogs; i++) {
        struct dlg d;
        bool ok;

        make_dialog(g, i, &d);
        ok = check(cca_dialog_validate(d.doc, d.id, &err), "dialog", d.id, &err);
        if (ok) {
            tally(g, d.doc, i);
            ok = submit(g, CCA_STORE_DIALOGS, d.id, d.doc);
        }
        json_decref(d.doc);
        if (!ok)
            goto out;
        keep_pace(g, i + 1);
    }
    for (size_t i = 0; i < g->o.customers; i++) {
        char cust_id[32];
        json_t *doc;
        bool ok;

        customer_id_of(i, cust_id);
        cca_customer_key(cust_id, key);
        doc = customer_doc(g, i, cust_id);
        ok = check(cca_customer_validate(doc, key, &err), "customer", cust_id, &err) &&
             submit(g, CCA_STORE_CUSTOMERS, key, doc);
        json_decref(doc);
        if (!ok)
            goto out;
        keep_pace(g, i + 1);
    }
    for (size_t j = 0; j < g->o.operators; j++) {
        struct op_info *op = &g->ops[j];
        json_t *doc;
        bool ok;

        if (cca_operator_token_new(op->token, hash) != CCA_OK) {
            fprintf(stderr, "demo-data: cannot make an operator token (getrandom)\n");
            goto out;
        }
        doc = operator_doc(op, hash);
        ok = check(cca_operator_validate(doc, op->id, &err), "operator", op->id, &err) &&
             submit(g, CCA_STORE_OPERATORS, op->id, doc);
        json_decref(doc);
        if (!ok)
            goto out;
    }
    ret = EXIT_SUCCESS;
out:
    drain(&g->sink);
    if (g->sink.failed > 0) {
        fprintf(stderr, "demo-data: %lu writes to %s failed: %s\n", g->sink.failed,
                g->o.storage, g->sink.err.msg);
        ret = EXIT_FAILURE;
    }
    return ret;
}

/* ---- printing -------------------------------------------------------------------- */

/*
 * A space, then @s in @width code points: cut with "…" or padded with spaces.
 * Code points, not bytes: Cyrillic letters take two bytes and one column.
 */
static void cell(FILE *out, const char *s, int width, bool right)
{
    size_t len = strlen(s);
    int cps = 0;
    size_t cut = len;

    for (size_t i = 0; i < len; i++) {
        if (((unsigned char)s[i] & 0xC0) == 0x80)
            continue;
        if (cps == width - 1)
            cut = i; /* room for "…" should the rest not fit */
        cps++;
    }
    if (cps > width)
        fprintf(out, " %.*s…", (int)cut, s);
    else if (right)
        fprintf(out, " %*s%s", width - cps, "", s);
    else
        fprintf(out, " %s%*s", s, width - cps, "");
}

static void time_text(int64_t ms, char buf[20])
{
    char t[CCA_TIME_LEN];

    cca_time_format(ms, t);
    (void)snprintf(buf, 20, "%.10s %.5s", t, t + 11);
}

static void print_rows(FILE *out, const struct demo *g, const struct top *t)
{
    if (t->total == 0) {
        fprintf(out, "  (none)\n");
        return;
    }
    fprintf(out, " ");
    cell(out, "created (UTC)", 16, false);
    cell(out, "dialog", 8, false);
    cell(out, "customer", 28, false);
    cell(out, "agents", 29, false);
    cell(out, "operator", 20, false);
    cell(out, "status", 9, false);
    cell(out, "msgs", 4, true);
    cell(out, "CSAT", 4, true);
    fprintf(out, "\n");
    for (size_t i = 0; i < t->n; i++) {
        const struct row *r = &t->v[i];
        char when[20], agents[64] = "", num[16], csat[8], id8[9];
        size_t used = 0;

        time_text(r->created_ms, when);
        for (int a = 0; a < CCA_AGENT__COUNT; a++) {
            if (r->agents & (1u << a))
                used += (size_t)snprintf(agents + used, sizeof(agents) - used, "%s%s",
                                         used > 0 ? "," : "",
                                         cca_agent_name((enum cca_agent)a));
        }
        (void)snprintf(num, sizeof(num), "%" PRIu32, r->messages);
        (void)snprintf(csat, sizeof(csat), "%d", r->csat);
        fprintf(out, " ");
        cell(out, when, 16, false);
        (void)snprintf(id8, sizeof(id8), "%.8s", r->id);
        cell(out, id8, 8, false);
        cell(out, r->customer, 28, false);
        cell(out, used > 0 ? agents : "-", 29, false);
        cell(out, r->op >= 0 ? g->ops[r->op].p.name : "-", 20, false);
        cell(out, cca_dialog_status_name(r->status), 9, false);
        cell(out, num, 4, true);
        cell(out, r->csat > 0 ? csat : "-", 4, true);
        fprintf(out, "\n");
    }
    if (t->total > t->n)
        fprintf(out, "  ... and %zu more\n", t->total - t->n);
}

static void print_profile(FILE *out, const char *kind, const struct person *p)
{
    char exp[16];

    (void)snprintf(exp, sizeof(exp), "%d", p->experience);
    fprintf(out, " ");
    cell(out, kind, 8, false);
    cell(out, p->full_name, 34, false);
    cell(out, p->city, 16, false);
    cell(out, p->birth_date, 10, false);
    cell(out, p->position, 32, false);
    cell(out, exp, 4, true);
    fprintf(out, "\n");
}

static void print_summary(FILE *out, const struct demo *g, int64_t took_ms)
{
    const struct opts *o = &g->o;
    bool keys = g->cfg->admin_api_keys[0] != '\0' || g->cfg->api_keys[0] != '\0' ||
                g->cfg->api_keys_file[0] != '\0';
    const char *auth = keys ? " -H \"Authorization: Bearer $ADMIN_KEY\"" : "";
    bool default_dir = strcmp(o->storage, "storage/dialogs") == 0;
    char from[20], to[20];
    size_t shown;

    time_text(g->start_ms, from);
    time_text(g->end_ms, to);
    fprintf(out,
            "Demo data (seed %" PRIu64 ") in %s: dialogs created %s .. %s UTC\n"
            "Wrote %lu operators, %lu customers and %lu dialogs in %.2f s",
            o->seed, o->storage, from, to, o->operators, o->customers, o->dialogs,
            (double)took_ms / 1000.0);
    if (g->existing[CCA_STORE_DIALOGS] + g->existing[CCA_STORE_OPERATORS] +
            g->existing[CCA_STORE_CUSTOMERS] >
        0)
        fprintf(out,
                " (the directory held %zu dialogs, %zu operators, %zu customers: the "
                "same ids were replaced, others kept)",
                g->existing[CCA_STORE_DIALOGS], g->existing[CCA_STORE_OPERATORS],
                g->existing[CCA_STORE_CUSTOMERS]);
    fprintf(out,
            ".\nDialogs: %zu closed (%zu rated), %zu escalated to a human; open: %zu "
            "active, %zu escalated, %zu queued, %zu assigned\n",
            g->by_status[CCA_DIALOG_CLOSED], g->rated, g->escalated,
            g->by_status[CCA_DIALOG_ACTIVE], g->by_status[CCA_DIALOG_ESCALATED],
            g->by_status[CCA_DIALOG_QUEUED], g->by_status[CCA_DIALOG_ASSIGNED]);

    fprintf(out, "\n=== All dialogs (%zu) ===\n", g->all.total);
    print_rows(out, g, &g->all);
    fprintf(out, "\n=== Dialogs of customer %s (%s): %zu ===\n", g->cust_id, g->cust_name,
            g->of_customer.total);
    print_rows(out, g, &g->of_customer);
    if (g->target_op >= 0) {
        fprintf(out, "\n=== Dialogs of operator %s: %zu ===\n",
                g->ops[g->target_op].p.name, g->of_operator.total);
        print_rows(out, g, &g->of_operator);
    } else {
        fprintf(out,
                "\n=== Dialogs of an operator ===\n  (no dialog reached an operator)\n");
    }

    fprintf(out, "\n=== Profiles: %lu operators, %lu customers ===\n ", o->operators,
            o->customers);
    cell(out, "kind", 8, false);
    cell(out, "full name", 34, false);
    cell(out, "city", 16, false);
    cell(out, "birth date", 10, false);
    cell(out, "position", 32, false);
    cell(out, "exp.", 4, true);
    fprintf(out, "\n");
    shown = o->operators < TOP_N ? o->operators : TOP_N;
    for (size_t j = 0; j < shown; j++)
        print_profile(out, "operator", &g->ops[j].p);
    if (o->operators > shown)
        fprintf(out, "  ... and %lu more operators\n", o->operators - shown);
    shown = o->customers < TOP_N ? o->customers : TOP_N;
    for (size_t i = 0; i < shown; i++) {
        struct person p;

        customer_of(g, i, &p);
        print_profile(out, "customer", &p);
    }
    if (o->customers > shown)
        fprintf(out, "  ... and %lu more customers\n", o->customers - shown);

    fprintf(out,
            "\n=== Operator tokens (shown once: only their SHA-256 is stored) ===\n");
    for (size_t j = 0; j < o->operators; j++) {
        fprintf(out, " ");
        cell(out, g->ops[j].p.name, 24, false);
        fprintf(out, "  %s  %s\n", g->ops[j].id, g->ops[j].token);
    }

    fprintf(out, "\n=== Browse ===\n");
    if (default_dir)
        fprintf(out, "  scripts/run    # the server on this storage, port %u\n",
                g->cfg->port);
    else
        fprintf(out, "  DIALOGS_STORAGE_PATH=%s scripts/run    # port %u\n", o->storage,
                g->cfg->port);
    fprintf(out,
            "  curl -s%s 'http://localhost:%u/api/v1/exports/dialogs?format=csv'\n"
            "  curl -s%s 'http://localhost:%u/api/v1/exports/dialogs?format=csv"
            "&customer_id=%s'\n",
            auth, g->cfg->port, auth, g->cfg->port, g->cust_id);
    if (g->target_op >= 0)
        fprintf(out,
                "  curl -s%s 'http://localhost:%u/api/v1/exports/dialogs?format=csv"
                "&operator_id=%s'\n",
                auth, g->cfg->port, g->ops[g->target_op].id);
    fprintf(out,
            "  curl -s%s 'http://localhost:%u/api/v1/exports/profiles?format=csv'\n"
            "  curl -s%s 'http://localhost:%u/api/v1/stats'\n"
            "  curl -s -H 'Authorization: Bearer %s' "
            "'http://localhost:%u/api/v1/operators/me'\n",
            auth, g->cfg->port, auth, g->cfg->port, g->ops[0].token, g->cfg->port);
    if (keys)
        fprintf(out, "  (ADMIN_KEY: one of ADMIN_API_KEYS)\n");
}

/* ---- the command ----------------------------------------------------------------- */

static void demo_cleanup(struct demo *g)
{
    cca_store_free(g->store);
    for (size_t i = 0; i < NTEXTS; i++) {
        for (size_t k = 0; k < CCA_AGENT__COUNT + 1; k++)
            cca_turn_cleanup(&g->memo[i][k].t);
        for (size_t k = 0; k < CCA_LANG__COUNT; k++)
            free(g->faq[i][k].answer);
    }
    if (g->ops != NULL)
        explicit_bzero(g->ops, g->o.operators * sizeof(*g->ops)); /* tokens */
    free(g->ops);
    free(g->ops_by_id);
    cca_agents_free(g->agents);
    cca_router_free(g->router);
    pthread_mutex_destroy(&g->sink.lock);
    pthread_cond_destroy(&g->sink.cond);
}

int cca_demo_cli(const struct cca_config *cfg, int argc, char **argv)
{
    struct demo *g = cca_xcalloc(1, sizeof(*g));
    struct cca_error err = {0};
    struct cca_router_params rp = {.min_score = cfg->router_min_score,
                                   .min_margin = cfg->router_min_margin,
                                   .default_agent = CCA_AGENT_TECH_SUPPORT};
    struct cca_store_file_params sp = {.fsync = cfg->storage_fsync,
                                       .max_file_bytes = (size_t)64 << 20,
                                       /* Each document is written once: no point
                                        * waiting for more changes to fold in. */
                                       .checkpoint_ms = 0,
                                       .max_segment_bytes = (size_t)16 << 20};
    int64_t now = cca_time_wall_ms();
    int64_t t0 = cca_time_mono_ms();
    struct person first;
    struct tm tm;
    time_t secs;
    int ret;
    cca_rc rc;

    g->cfg = cfg;
    g->target_op = -1;
    pthread_mutex_init(&g->sink.lock, NULL);
    pthread_cond_init(&g->sink.cond, NULL);
    ret = parse_opts(cfg, argc, argv, &g->o);
    if (ret != 0) {
        ret = ret < 0 ? EXIT_SUCCESS : 2;
        goto out;
    }
    ret = EXIT_FAILURE;
    /* The window ends at the start of the current UTC day: stable all day. */
    g->end_ms = now - now % DAY_MS;
    g->start_ms = g->end_ms - (int64_t)g->o.days * DAY_MS;
    secs = (time_t)(g->end_ms / 1000);
    (void)gmtime_r(&secs, &tm);
    g->year = tm.tm_year + 1900;

    (void)cca_agent_parse(cfg->router_default_agent, &rp.default_agent);
    rc = cca_router_new(cfg->lexicon_path, &rp, &g->router, &err);
    if (rc == CCA_OK)
        rc = cca_agents_new(cfg->data_dir, &g->agents, &err);
    if (rc != CCA_OK) {
        fprintf(stderr, "demo-data: cannot load data: %s\n", err.msg);
        goto out;
    }

    g->ops = cca_xcalloc(g->o.operators, sizeof(*g->ops));
    g->ops_by_id = cca_xcalloc(g->o.operators, sizeof(*g->ops_by_id));
    for (size_t j = 0; j < g->o.operators; j++) {
        make_operator(g, j, &g->ops[j]);
        g->ops_by_id[j] = j;
        g->seats += g->ops[j].max_dialogs;
    }
    qsort_r(g->ops_by_id, g->o.operators, sizeof(*g->ops_by_id), by_op_id, g->ops);
    /* The customer whose dialogs are listed: the first dialog's (tally), else the first.
     */
    customer_id_of(0, g->cust_id);
    customer_of(g, 0, &first);
    (void)snprintf(g->cust_name, sizeof(g->cust_name), "%s", first.full_name);

    sp.dir = g->o.storage;
    rc = cca_store_file_new(&sp, &g->store, &err);
    if (rc == CCA_ERR_CONFLICT) {
        fprintf(stderr,
                "demo-data: the storage directory is in use by a running server (%s); "
                "stop it first or pass --storage DIR\n",
                err.msg);
        goto out;
    }
    if (rc == CCA_OK)
        rc = cca_store_load(g->store, count_existing, report_skipped, g, &err);
    if (rc != CCA_OK) {
        fprintf(stderr, "demo-data: cannot open the storage %s: %s\n", g->o.storage,
                err.msg);
        goto out;
    }
    ret = generate(g);
    cca_store_free(g->store); /* every file written, the lock released */
    g->store = NULL;
    if (ret == EXIT_SUCCESS && !g->o.quiet) {
        print_summary(stdout, g, cca_time_mono_ms() - t0);
        (void)fflush(stdout);
    }
out:
    demo_cleanup(g);
    free(g);
    return ret;
}
