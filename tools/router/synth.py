# SPDX-License-Identifier: MIT
"""Synthetic, generic training sentences for the router model (issue 16).

Written by the team from the agent definitions (data/routing/dev/README.md,
"Agents"), not from any dataset: templates that describe the *shape* of a
request (a question about a product or its price, a report of a malfunction,
dissatisfaction or a demand) over a pool of products and services from several
domains (telecom, banking, delivery, retail, software). The same product pool
serves every agent, so a product word carries no class signal; the shape words
do. Deterministic for a given seed. No dataset text is copied here:
tools/router/check_overlap.py finds no sentence of the datasets and no run of
5 words shared with one (three templates were rephrased after it found
them).

generate(lang, seed) -> list of {"text", "expected_agent", "source", "domain"}.
"""

import random

SOURCE = "synthetic:tools/router/synth.py"

# ---- English ------------------------------------------------------------

EN_FIX = [  # things that can fail: (noun, domain)
    ("card", "bank"), ("credit card", "bank"), ("virtual card", "bank"),
    ("app", "soft"), ("mobile app", "soft"), ("website", "soft"),
    ("online banking", "bank"), ("internet", "tel"), ("wifi", "tel"),
    ("router", "tel"), ("modem", "tel"), ("phone", "retail"), ("SIM card", "tel"),
    ("TV box", "tel"), ("printer", "retail"), ("laptop", "retail"),
    ("contactless payment", "bank"), ("tracking page", "deliv"),
    ("checkout page", "retail"), ("washing machine", "retail"),
    ("account", "soft"), ("card reader", "bank"), ("smart watch", "retail"),
]
EN_BUY = [
    ("card", "bank"), ("premium card", "bank"), ("virtual card", "bank"),
    ("savings account", "bank"), ("joint account", "bank"), ("business loan", "bank"),
    ("mortgage", "bank"), ("travel insurance", "bank"), ("mobile plan", "tel"),
    ("unlimited data plan", "tel"), ("fibre internet", "tel"), ("TV package", "tel"),
    ("subscription", "soft"), ("pro license", "soft"), ("phone", "retail"),
    ("laptop", "retail"), ("sofa", "retail"), ("winter jacket", "retail"),
    ("sneakers", "retail"), ("headphones", "retail"), ("gift card", "retail"),
    ("express delivery", "deliv"), ("parcel locker", "deliv"), ("tablet", "retail"),
]
EN_PLACE = ["Germany", "Canada", "Spain", "the UK", "Poland", "Mexico", "Japan",
            "my city", "Texas", "Australia", "Italy", "Brazil"]
EN_PAY = ["PayPal", "Apple Pay", "a credit card", "bank transfer", "cash on delivery",
          "Google Pay", "crypto", "a debit card", "installments"]
EN_CUR = ["euros", "dollars", "pounds", "yen", "Swiss francs", "zloty"]
EN_BRAND = ["@QuickBank", "@MegaTel", "@ShopNow", "@FastPost", "@HomeStore",
            "@CloudApp", "@AirNet"]
EN_WAIT = ["two weeks", "a month", "10 days", "three weeks", "5 days", "six weeks"]
EN_ACT = ["log in", "sign in", "pay", "make a transfer", "check out", "upload a file",
          "top up", "verify my identity", "reset my password", "open the app",
          "add my card", "connect"]

EN = {
    "sales": [
        "How much does the {b} cost?", "What is the price of the {b}?",
        "how much is a {b}", "What are the fees for a {b}?",
        "Is there a monthly fee for the {b}?", "Do you charge anything for the {b}?",
        "Can I buy a {b} online?", "I'd like to order a {b}.", "I want to get a {b}.",
        "How do I get a {b}?", "How can I apply for a {b}?",
        "Do you have a {b} for students?", "What {b} options do you offer?",
        "Which {b} would you recommend for a family?",
        "What is the difference between the {b} and the {b2}?",
        "Is the {b} available in {place}?", "Can you send an order to {place}?",
        "Do you deliver to {place}?", "How long does delivery to {place} take?",
        "How fast can I get the {b}?", "What delivery options do you have?",
        "Can I pay with {pay}?", "Do you accept {pay}?",
        "Which payment methods can I use for the {b}?",
        "Which currencies do you support? Can I use {cur}?",
        "Can I top up in {cur}?", "Is there a fee to top up with {pay}?",
        "What is the exchange rate fee for {cur}?",
        "Are there any discounts on the {b}?", "Do you have a promo for new customers?",
        "Can I upgrade to the {b}?", "I'm interested in the {b}, what are the terms?",
        "How old do I have to be to open a {b}?", "Can my kid get a {b}?",
        "What's the interest rate on the {b}?", "Is the {b} in stock?",
        "When will the {b} be available again?", "Can I get a second {b} for my partner?",
        "Do you offer a free trial of the {b}?", "What plans do you have?",
        "I'm thinking about switching to your {b}, what does it include?",
        "Can I reserve a {b} and pick it up in store?",
        "Is there a cheaper option than the {b}?", "What's included in the {b}?",
        "how many {b}s can I order at once", "any deals on the {b} this week?",
        "Do you sell the {b} with a warranty?", "What does shipping cost?",
    ],
    "tech_support": [
        "My {f} is not working.", "The {f} stopped working this morning.",
        "The {f} doesn't work.", "I can't {act}.", "I can't {act}, it keeps failing.",
        "I can't log in to my account.", "I forgot my password and can't get in.",
        "The app crashes every time I {act}.", "I get an error when I try to {act}.",
        "Error {code} when I try to {act}, what does it mean?",
        "The {f} keeps freezing.", "The {f} won't turn on.",
        "My {f} was declined at the shop even though it is active.",
        "The {f} shows a blank screen.", "The {f} is very slow and keeps disconnecting.",
        "I didn't receive the verification code.", "The SMS code never arrives.",
        "My PIN is blocked after three tries.", "How do I reset my PIN?",
        "How do I reset my password?", "The identity check fails every time.",
        "The page won't load.", "The {f} says 'something went wrong'.",
        "No internet since yesterday, the light on the {f} is red.",
        "The {f} doesn't connect to the network.", "Why is my {f} not working?",
        "The update broke the {f}.", "I can't add my card to the {f}.",
        "The payment keeps failing with an error.", "The {f} does not respond.",
        "After the update I can't {act}.", "It says my account is locked, how do I unlock it?",
        "the {f} keeps logging me out", "my {f} isn't working at all, help",
        "The button does nothing when I try to {act}.", "Two-factor authentication doesn't work.",
        "The {f} shows the wrong balance.", "I can't sign up, the form gives an error.",
        "How do I set up the {f}?", "The {f} has no signal.",
        "Tracking shows an error for my parcel number.", "The {f} won't accept my password.",
    ],
    "supervisor": [
        "I want my money back.", "I want a refund for the {b}.", "Refund me now.",
        "I demand a refund, the {b} was not as described.",
        "I've been waiting {wait} for my order and nobody answers.",
        "My order is {wait} late. This is unacceptable.",
        "Still no response to my emails after {wait}.", "Still not resolved. Third time I'm writing.",
        "Nobody has called me back as promised.", "No reply yet. Really?",
        "Thanks for nothing {brand} #fail", "Great service {brand}, {wait} and still waiting #disappointed",
        "{brand} worst customer service ever", "{brand} you lost my parcel and nobody cares",
        "Wow {brand}, charged me twice and no one helps. Thanks a lot.",
        "You sold me a {b} that doesn't match what was advertised.",
        "Your salesperson lied to me about the {b}.", "I was misled about the fees.",
        "I'm very disappointed with your service.", "This is ridiculous.",
        "Put a manager on this, please.", "Let me talk to a real person.",
        "Get me a human, not a bot.", "I want to file a complaint.",
        "I will report you to consumer protection.", "My lawyer will contact you.",
        "I'll take this to court.", "Cancel my {b} and return my money.",
        "You charged me for a {b} I never ordered, fix it.",
        "Why is it so hard to get a straight answer from you?",
        "How many times do I have to call before someone helps me?",
        "I have been on hold for an hour. Terrible.",
        "This is the worst experience I've had with any company.",
        "I'm fed up with your excuses.", "I'm never buying from you again.",
        "you promised delivery by friday and it's still not here",
        "my complaint has been ignored for {wait}", "Absolutely useless support.",
        "The {b} arrived broken and you refuse to replace it.",
        "Your staff was rude to me in the store.",
        "I was overcharged and I want an explanation from a supervisor.",
        "so {brand} just takes my money and disappears? #scam",
        "Shame on you {brand}", "I'm closing my account because of how you treated me.",
    ],
}
EN_OPEN = ["", "", "", "Hi, ", "Hello, ", "Hi there. ", "Good morning, ", "Hey ",
           "Excuse me, ", "Hi team, "]
EN_CLOSE = ["", "", "", " Thanks.", " Thank you!", " Please help.", " Thanks in advance.",
            " Regards."]

# ---- Russian ------------------------------------------------------------
# (nom, acc, gen, prep, gender m/f/n/p, domain)
RU_FIX = [
    ("карта", "карту", "карты", "карте", "f", "bank"),
    ("виртуальная карта", "виртуальную карту", "виртуальной карты", "виртуальной карте", "f", "bank"),
    ("приложение", "приложение", "приложения", "приложении", "n", "soft"),
    ("мобильное приложение", "мобильное приложение", "мобильного приложения", "мобильном приложении", "n", "soft"),
    ("сайт", "сайт", "сайта", "сайте", "m", "soft"),
    ("личный кабинет", "личный кабинет", "личного кабинета", "личном кабинете", "m", "soft"),
    ("интернет", "интернет", "интернета", "интернете", "m", "tel"),
    ("роутер", "роутер", "роутера", "роутере", "m", "tel"),
    ("модем", "модем", "модема", "модеме", "m", "tel"),
    ("телефон", "телефон", "телефона", "телефоне", "m", "retail"),
    ("SIM-карта", "SIM-карту", "SIM-карты", "SIM-карте", "f", "tel"),
    ("приставка", "приставку", "приставки", "приставке", "f", "tel"),
    ("бесконтактная оплата", "бесконтактную оплату", "бесконтактной оплаты", "бесконтактной оплате", "f", "bank"),
    ("онлайн-банк", "онлайн-банк", "онлайн-банка", "онлайн-банке", "m", "bank"),
    ("ноутбук", "ноутбук", "ноутбука", "ноутбуке", "m", "retail"),
    ("стиральная машина", "стиральную машину", "стиральной машины", "стиральной машине", "f", "retail"),
    ("страница отслеживания", "страницу отслеживания", "страницы отслеживания", "странице отслеживания", "f", "deliv"),
    ("терминал", "терминал", "терминала", "терминале", "m", "bank"),
    ("наушники", "наушники", "наушников", "наушниках", "p", "retail"),
    ("аккаунт", "аккаунт", "аккаунта", "аккаунте", "m", "soft"),
]
RU_BUY = [
    ("карта", "карту", "карты", "карте", "f", "bank"),
    ("кредитная карта", "кредитную карту", "кредитной карты", "кредитной карте", "f", "bank"),
    ("виртуальная карта", "виртуальную карту", "виртуальной карты", "виртуальной карте", "f", "bank"),
    ("вклад", "вклад", "вклада", "вкладе", "m", "bank"),
    ("совместный счёт", "совместный счёт", "совместного счёта", "совместном счёте", "m", "bank"),
    ("кредит для бизнеса", "кредит для бизнеса", "кредита для бизнеса", "кредите для бизнеса", "m", "bank"),
    ("ипотека", "ипотеку", "ипотеки", "ипотеке", "f", "bank"),
    ("страховка", "страховку", "страховки", "страховке", "f", "bank"),
    ("тариф", "тариф", "тарифа", "тарифе", "m", "tel"),
    ("безлимитный интернет", "безлимитный интернет", "безлимитного интернета", "безлимитном интернете", "m", "tel"),
    ("пакет каналов", "пакет каналов", "пакета каналов", "пакете каналов", "m", "tel"),
    ("подписка", "подписку", "подписки", "подписке", "f", "soft"),
    ("лицензия", "лицензию", "лицензии", "лицензии", "f", "soft"),
    ("смартфон", "смартфон", "смартфона", "смартфоне", "m", "retail"),
    ("ноутбук", "ноутбук", "ноутбука", "ноутбуке", "m", "retail"),
    ("диван", "диван", "дивана", "диване", "m", "retail"),
    ("куртка", "куртку", "куртки", "куртке", "f", "retail"),
    ("кроссовки", "кроссовки", "кроссовок", "кроссовках", "p", "retail"),
    ("наушники", "наушники", "наушников", "наушниках", "p", "retail"),
    ("подарочный сертификат", "подарочный сертификат", "подарочного сертификата", "подарочном сертификате", "m", "retail"),
    ("экспресс-доставка", "экспресс-доставку", "экспресс-доставки", "экспресс-доставке", "f", "deliv"),
    ("холодильник", "холодильник", "холодильника", "холодильнике", "m", "retail"),
]
RU_VERB = {  # per gender: works, stopped, broke, arrived, costs, was
    "work": {"m": "работает", "f": "работает", "n": "работает", "p": "работают"},
    "stopped": {"m": "перестал", "f": "перестала", "n": "перестало", "p": "перестали"},
    "broke": {"m": "сломался", "f": "сломалась", "n": "сломалось", "p": "сломались"},
    "arrived": {"m": "пришёл", "f": "пришла", "n": "пришло", "p": "пришли"},
    "costs": {"m": "стоит", "f": "стоит", "n": "стоит", "p": "стоят"},
    "avail": {"m": "доступен", "f": "доступна", "n": "доступно", "p": "доступны"},
}
RU_PLACE = ["в Германию", "в Казахстан", "в Беларусь", "в Испанию", "в Армению",
            "в мой город", "в Новосибирск", "в область", "за границу", "в Грузию"]
RU_PAY = ["картой", "наличными", "через СБП", "переводом", "в рассрочку",
          "кредитной картой", "электронным кошельком", "при получении"]
RU_CUR = ["евро", "доллары", "юани", "тенге", "фунты", "лиры"]
RU_BRAND = ["@БыстроБанк", "@МегаСвязь", "@ШопТут", "@ПочтаПлюс", "@ДомМаркет",
            "@quickbank_ru", "@megatel"]
RU_WAIT = ["две недели", "месяц", "10 дней", "три недели", "неделю", "полтора месяца"]
RU_ACT = ["войти", "зайти в личный кабинет", "оплатить", "сделать перевод",
          "оформить оплату", "пополнить счёт", "подтвердить личность",
          "сбросить пароль", "открыть приложение", "привязать карту", "подключиться"]

RU = {
    "sales": [
        "Сколько стоит {acc}?", "Какая цена у {gen}?", "сколько {costs} {nom}",
        "Какая комиссия за {acc}?", "Есть ли ежемесячная плата за {acc}?",
        "Можно ли купить {acc} онлайн?", "Хочу заказать {acc}.", "Хочу оформить {acc}.",
        "Как получить {acc}?", "Как оформить {acc}?", "Есть ли {nom} для студентов?",
        "Какие варианты {gen} у вас есть?", "Какой {nom} вы посоветуете для семьи?",
        "Чем отличается {nom} от {gen2}?", "{Nom} {avail} {place_prep}?",
        "Вы доставляете {place}?", "Есть ли доставка {place}?",
        "Сколько идёт доставка {place}?", "Как быстро можно получить {acc}?",
        "Какие способы доставки у вас есть?", "Можно оплатить {pay}?",
        "Принимаете оплату {pay}?", "Какими способами можно оплатить {acc}?",
        "Можно ли у вас расплачиваться в другой валюте, например {cur}?", "Можно пополнить в {cur}?",
        "Есть ли комиссия за пополнение {pay}?", "Какой курс при обмене на {cur}?",
        "Есть ли скидки на {acc}?", "Есть ли акции для новых клиентов?",
        "Можно перейти на {acc} подороже?", "Интересует {nom}, какие условия?",
        "С какого возраста можно открыть {acc}?", "Может ли ребёнок получить {acc}?",
        "Какая процентная ставка у {gen}?", "{Nom} есть в наличии?",
        "Когда снова появится {nom}?", "Можно получить вторую {acc} для мужа?",
        "Есть ли пробный период для {gen}?", "Какие у вас тарифы?",
        "Думаю перейти к вам, что входит в {acc}?",
        "Можно забронировать {acc} и забрать в магазине?",
        "Есть вариант дешевле, чем {nom}?", "Что входит в {acc}?",
        "какие условия у {gen}", "есть ли сейчас предложения на {acc}?",
        "Есть ли гарантия на {acc}?", "Сколько стоит доставка?",
        "Подскажите, пожалуйста, стоимость {gen}.",
    ],
    "tech_support": [
        "{Nom} не {work}.", "{Nom} {stopped} работать сегодня утром.",
        "У меня не {work} {nom}.", "Не могу {act}.", "Не получается {act}, выдаёт ошибку.",
        "Не могу войти в аккаунт.", "Забыл пароль и не могу зайти.",
        "Приложение вылетает, когда пытаюсь {act}.", "Выдаёт ошибку, когда пытаюсь {act}.",
        "Ошибка {code} при попытке {act}, что это значит?", "{Nom} постоянно зависает.",
        "{Nom} не включается.", "{Nom} {broke}, что делать?",
        "Мою {acc} отклонили в магазине, хотя она активна.",
        "{Nom} показывает белый экран.", "{Nom} очень медленно работает и отключается.",
        "Не приходит код подтверждения.", "СМС с кодом не приходит.",
        "ПИН-код заблокирован после трёх попыток.", "Как сбросить ПИН-код?",
        "Как восстановить пароль?", "Проверка личности всё время не проходит.",
        "Страница не загружается.", "{Nom} пишет «что-то пошло не так».",
        "Со вчерашнего дня нет интернета, на роутере горит красная лампочка.",
        "{Nom} не подключается к сети.", "Почему не {work} {nom}?",
        "После обновления не {work} {nom}.", "Не могу привязать карту в приложении.",
        "Платёж не проходит, выдаёт ошибку.", "{Nom} не реагирует.",
        "После обновления не могу {act}.", "Пишет, что аккаунт заблокирован, как разблокировать?",
        "{nom} постоянно выкидывает из аккаунта", "вообще не {work} {nom}, помогите",
        "Кнопка ничего не делает, когда пытаюсь {act}.",
        "Не работает двухфакторная аутентификация.", "В {prep} неправильный баланс.",
        "Не могу зарегистрироваться, форма выдаёт ошибку.", "Как настроить {acc}?",
        "Нет сигнала, {nom} не видит сеть.", "Трек-номер выдаёт ошибку на сайте.",
        "{Nom} не принимает мой пароль.", "Сбой при входе, что делать?",
    ],
    "supervisor": [
        "Верните мои деньги.", "Хочу вернуть деньги за {acc}.", "Требую возврат денег.",
        "Требую вернуть деньги, {nom} не соответствует описанию.",
        "Жду заказ уже {wait}, и никто не отвечает.", "Заказ опаздывает на {wait}. Это недопустимо.",
        "Уже {wait} нет ответа на мои письма.", "До сих пор не решено. Пишу уже третий раз.",
        "Мне так и не перезвонили, как обещали.", "Ответа до сих пор нет. Серьёзно?",
        "Спасибо за ничего {brand} #позор", "Отличный сервис {brand}, {wait} жду #разочарование",
        "{brand} худший сервис в моей жизни", "{brand} потеряли мою посылку и всем всё равно",
        "Ну спасибо {brand}, списали деньги дважды и никто не помогает.",
        "Мне продали {acc}, который не соответствует рекламе.",
        "Ваш продавец обманул меня насчёт {gen}.", "Меня ввели в заблуждение насчёт комиссии.",
        "Я очень разочарован вашим сервисом.", "Это просто издевательство.",
        "Позовите руководителя.", "Хочу поговорить с живым человеком.",
        "Соедините с оператором, а не с ботом.", "Хочу написать жалобу.",
        "Я обращусь в Роспотребнадзор.", "Мой юрист с вами свяжется.",
        "Я подам на вас в суд.", "Отмените {acc} и верните деньги.",
        "Вы списали деньги за {acc}, который я не заказывал, разберитесь.",
        "Почему от вас невозможно добиться нормального ответа?",
        "Сколько раз мне ещё звонить, чтобы мне помогли?",
        "Я час висел на линии. Ужасно.", "Это худший опыт с какой-либо компанией.",
        "Надоели ваши отговорки.", "Больше никогда у вас ничего не куплю.",
        "обещали доставку к пятнице, а до сих пор ничего нет",
        "мою жалобу игнорируют уже {wait}", "Поддержка абсолютно бесполезная.",
        "{Nom} {arrived} сломанным, а заменить вы отказываетесь.",
        "Ваш сотрудник нагрубил мне в магазине.",
        "С меня взяли лишнее, хочу объяснений от руководства.",
        "то есть {brand} просто забирает деньги и пропадает? #мошенники",
        "Позор вам {brand}", "Закрываю счёт из-за вашего отношения.",
        "Безобразие, деньги списали, а заказ так и не отправили.",
    ],
}
RU_OPEN = ["", "", "", "Здравствуйте, ", "Добрый день! ", "Привет. ", "Здравствуйте! ",
           "Подскажите, ", "Добрый вечер, "]
RU_CLOSE = ["", "", "", " Спасибо.", " Заранее спасибо!", " Помогите, пожалуйста.",
            " Жду ответа."]

def _cap(s):
    return s[:1].upper() + s[1:] if s else s


def _style(rng, text, lang):
    """Chat and social-media variation: case, end punctuation."""
    r = rng.random()
    if r < 0.2:
        text = text.lower()
    if rng.random() < 0.25 and text and text[-1] in ".?!":
        text = text[:-1]
    return text


def _fill_en(rng, t, label):
    # Both pools serve every template (mostly its own): nouns stay neutral.
    f = rng.choice(EN_FIX if rng.random() < 0.7 else EN_BUY)
    b, b2 = rng.sample(EN_BUY if rng.random() < 0.7 else EN_FIX, 2)
    slots = {
        "f": f[0], "b": b[0], "b2": b2[0], "place": rng.choice(EN_PLACE),
        "pay": rng.choice(EN_PAY), "cur": rng.choice(EN_CUR),
        "brand": rng.choice(EN_BRAND), "wait": rng.choice(EN_WAIT),
        "act": rng.choice(EN_ACT), "code": str(rng.randint(100, 999)),
    }
    domain = f[1] if "{f}" in t else b[1] if "{b}" in t else "generic"
    return t.format(**slots), domain


def _fill_ru(rng, t, label):
    own = RU_FIX if label == "tech_support" else RU_BUY
    pool = own if rng.random() < 0.7 else RU_FIX + RU_BUY
    p = rng.choice(pool)
    q = rng.choice([e for e in RU_BUY if e[0] != p[0]])
    nom, acc, gen, prep, g, dom = p
    slots = {
        "nom": nom, "Nom": _cap(nom), "acc": acc, "gen": gen, "prep": prep,
        "gen2": q[2],
        "work": RU_VERB["work"][g], "stopped": RU_VERB["stopped"][g],
        "broke": RU_VERB["broke"][g], "arrived": RU_VERB["arrived"][g],
        "costs": RU_VERB["costs"][g], "avail": RU_VERB["avail"][g],
        "place": rng.choice(RU_PLACE), "place_prep": rng.choice(
            ["в Казахстане", "в Германии", "в моём городе", "в регионах", "в Минске"]),
        "pay": rng.choice(RU_PAY), "cur": rng.choice(RU_CUR),
        "brand": rng.choice(RU_BRAND), "wait": rng.choice(RU_WAIT),
        "act": rng.choice(RU_ACT), "code": str(rng.randint(100, 999)),
    }
    uses = any("{%s}" % k in t for k in ("nom", "Nom", "acc", "gen", "prep"))
    return t.format(**slots), dom if uses else "generic"


def generate(lang, seed=16, per_template=9):
    """Sentences for @lang ("en" or "ru"), each template filled @per_template
    times with different slot values; duplicates dropped."""
    rng = random.Random("%s:%d" % (lang, seed))
    table, fill = (EN, _fill_en) if lang == "en" else (RU, _fill_ru)
    opens, closes = (EN_OPEN, EN_CLOSE) if lang == "en" else (RU_OPEN, RU_CLOSE)
    out, seen = [], set()
    for label in ("tech_support", "sales", "supervisor"):
        for ti, t in enumerate(table[label]):
            for _ in range(per_template):
                text, domain = fill(rng, t, label)
                o = rng.choice(opens)
                if o and not text.startswith("@") and not text[:1].islower():
                    text = o + (text[0].lower() + text[1:] if o.endswith(", ") and
                                not text.startswith(("I ", "I'", "SIM", "TV"))
                                else text)
                text = text + rng.choice(closes)
                text = _style(rng, text, lang)
                key = text.lower()
                if key in seen:
                    continue
                seen.add(key)
                out.append({"text": text, "expected_agent": label, "source": SOURCE,
                            "domain": domain, "group": "%s/%d" % (label, ti)})
    return out


if __name__ == "__main__":
    import json
    import sys

    for row in generate(sys.argv[1] if len(sys.argv) > 1 else "en"):
        print(json.dumps(row, ensure_ascii=False))
