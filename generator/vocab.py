"""Fixed vocabularies of the generator: regions, cities, names, products.

The lists are chosen so that no customer or manager last name occurs inside any text the
pipeline keeps in plain form (cities, streets, store names, products, first names), so that
tests can scan the lake and the warehouse for leaked last names without false alarms.
"""

from __future__ import annotations

from contract.sales import REASONS, REGIONS

# Spellings of each region as the source system writes them: index 0 is canonical, the others
# are valid after trimming and ignoring case.
REGION_FORMS: tuple[tuple[str, ...], ...] = tuple(
    (r, f" {r.lower()} ", r.upper(), r.lower(), f"{r} ", f"  {r.upper()}") for r in REGIONS
)

REGION_WORDS: dict[str, str] = {
    "North": "Северный",
    "South": "Южный",
    "East": "Восточный",
    "West": "Западный",
}

FORMATS: tuple[str, ...] = ("hypermarket", "supermarket", "express")
FORMAT_WORDS: dict[str, str] = {
    "hypermarket": "Гипермаркет",
    "supermarket": "Супермаркет",
    "express": "Экспресс",
}
# Relative sales volume of a store by format.
FORMAT_WEIGHTS: dict[str, int] = {"hypermarket": 30, "supermarket": 15, "express": 6}

# city, postcode prefix (first three digits)
CITIES: dict[str, tuple[tuple[str, str], ...]] = {
    "North": (
        ("Arkhangelsk", "163"),
        ("Murmansk", "183"),
        ("Petrozavodsk", "185"),
        ("Vologda", "160"),
        ("Syktyvkar", "167"),
        ("Saint Petersburg", "190"),
        ("Veliky Novgorod", "173"),
    ),
    "South": (
        ("Krasnodar", "350"),
        ("Rostov-on-Don", "344"),
        ("Sochi", "354"),
        ("Volgograd", "400"),
        ("Astrakhan", "414"),
        ("Stavropol", "355"),
    ),
    "East": (
        ("Novosibirsk", "630"),
        ("Krasnoyarsk", "660"),
        ("Irkutsk", "664"),
        ("Khabarovsk", "680"),
        ("Vladivostok", "690"),
        ("Tomsk", "634"),
        ("Omsk", "644"),
    ),
    "West": (
        ("Smolensk", "214"),
        ("Kaliningrad", "236"),
        ("Bryansk", "241"),
        ("Pskov", "180"),
        ("Kursk", "305"),
        ("Tver", "170"),
    ),
}
ALL_CITIES: tuple[str, ...] = tuple(c for cs in CITIES.values() for c, _ in cs)

STREETS: tuple[str, ...] = (
    "Lenina",
    "Mira",
    "Sovetskaya",
    "Tsentralnaya",
    "Sadovaya",
    "Molodezhnaya",
    "Shkolnaya",
    "Naberezhnaya",
    "Pobedy",
    "Oktyabrskaya",
    "Zarechnaya",
    "Lesnaya",
    "Vokzalnaya",
    "Polevaya",
)

FEMALE_FIRST: tuple[str, ...] = (
    "Anna",
    "Maria",
    "Elena",
    "Olga",
    "Natalia",
    "Irina",
    "Tatiana",
    "Svetlana",
    "Ekaterina",
    "Yulia",
    "Anastasia",
    "Daria",
    "Polina",
    "Ksenia",
    "Viktoria",
    "Alina",
)
MALE_FIRST: tuple[str, ...] = (
    "Alexander",
    "Dmitry",
    "Sergey",
    "Andrey",
    "Alexey",
    "Ivan",
    "Mikhail",
    "Nikolai",
    "Pavel",
    "Maxim",
    "Artem",
    "Roman",
    "Vladimir",
    "Egor",
    "Kirill",
    "Oleg",
)
# Male forms; the female form appends "a" (every entry ends in -ov, -ev or -in).
LAST_NAMES: tuple[str, ...] = (
    "Ivanov",
    "Smirnov",
    "Kuznetsov",
    "Popov",
    "Vasiliev",
    "Petrov",
    "Sokolov",
    "Mikhailov",
    "Novikov",
    "Fedorov",
    "Morozov",
    "Volkov",
    "Alekseev",
    "Lebedev",
    "Semenov",
    "Egorov",
    "Kozlov",
    "Stepanov",
    "Nikolaev",
    "Orlov",
    "Andreev",
    "Makarov",
    "Nikitin",
    "Zakharov",
    "Zaitsev",
    "Soloviev",
    "Borisov",
    "Yakovlev",
    "Grigoriev",
    "Vorobiev",
    "Kuzmin",
    "Frolov",
    "Gusev",
    "Kiselev",
    "Ilyin",
    "Belov",
    "Tarasov",
    "Belyaev",
    "Komarov",
    "Vinogradov",
    "Bogdanov",
    "Medvedev",
    "Ershov",
    "Nikiforov",
    "Denisov",
    "Gromov",
    "Tikhonov",
    "Kudryavtsev",
)

EMAIL_DOMAINS: tuple[str, ...] = (
    "mail.ru",
    "yandex.ru",
    "gmail.com",
    "bk.ru",
    "inbox.ru",
    "list.ru",
    "rambler.ru",
    "ya.ru",
)
MANAGER_EMAIL_DOMAIN = "example.ru"
MOBILE_CODES: tuple[int, ...] = (912, 916, 903, 921, 926, 985, 999, 950, 911, 905, 918, 960)

# Products: category -> (supplier, brands, items); an item is (name, ((size, price RUB), ...)).
CATALOGUE: dict[
    str, tuple[str, tuple[str, ...], tuple[tuple[str, tuple[tuple[str, float], ...]], ...]]
] = {
    "Dairy": (
        "Danone Russia",
        ("Prostokvashino", "Domik v Derevne", "Savushkin"),
        (
            ("Milk 3.2%", (("1 l", 89.90), ("0.5 l", 54.90))),
            ("Kefir 1%", (("900 ml", 79.90), ("450 ml", 47.90))),
            ("Sour cream 20%", (("300 g", 109.90), ("180 g", 72.90))),
            ("Cottage cheese 5%", (("200 g", 119.90), ("400 g", 219.90))),
            ("Butter 82.5%", (("180 g", 229.90),)),
            ("Yogurt strawberry", (("125 g", 39.90), ("270 g", 84.90))),
        ),
    ),
    "Bakery": (
        "Khlebny Dom",
        ("Khlebny Dom", "Kolomenskoye", "Harry's"),
        (
            ("Borodinsky bread", (("400 g", 64.90),)),
            ("White loaf", (("380 g", 49.90),)),
            ("Baguette", (("250 g", 59.90),)),
            ("Croissant", (("60 g", 39.90), ("4 pcs", 149.90))),
            ("Rye bread", (("300 g", 54.90),)),
        ),
    ),
    "Meat": (
        "Cherkizovo Group",
        ("Cherkizovo", "Miratorg", "Petelinka"),
        (
            ("Chicken breast", (("1 kg", 429.90), ("500 g", 229.90))),
            ("Pork neck", (("1 kg", 549.90),)),
            ("Beef mince", (("400 g", 329.90),)),
            ("Doctor's sausage", (("400 g", 289.90),)),
            ("Frankfurters", (("450 g", 249.90),)),
        ),
    ),
    "Fish": (
        "Russian Sea",
        ("Russian Sea", "Meridian"),
        (
            ("Salted herring", (("300 g", 189.90),)),
            ("Salmon fillet", (("200 g", 499.90),)),
            ("Canned saury", (("250 g", 129.90),)),
            ("Crab sticks", (("200 g", 99.90),)),
        ),
    ),
    "Fruit and vegetables": (
        "Agro Invest",
        ("Fresh Farm", "Ovoshchnaya Lavka"),
        (
            ("Bananas", (("1 kg", 119.90),)),
            ("Apples Golden", (("1 kg", 149.90),)),
            ("Potatoes", (("2 kg", 99.90), ("5 kg", 219.90))),
            ("Tomatoes", (("1 kg", 249.90),)),
            ("Cucumbers", (("1 kg", 179.90),)),
            ("Onions", (("1 kg", 49.90),)),
            ("Oranges", (("1 kg", 159.90),)),
        ),
    ),
    "Beverages": (
        "PepsiCo Russia",
        ("Dobry", "Fruktovy Sad", "Svyatoy Istochnik", "Chernogolovka"),
        (
            ("Apple juice", (("1 l", 129.90), ("0.2 l", 39.90))),
            ("Mineral water", (("1.5 l", 59.90), ("0.5 l", 34.90))),
            ("Kvass", (("1.5 l", 99.90),)),
            ("Lemonade Tarkhun", (("1.5 l", 89.90),)),
            ("Black tea", (("100 bags", 299.90), ("25 bags", 89.90))),
            ("Ground coffee", (("250 g", 399.90),)),
        ),
    ),
    "Snacks": (
        "Mondelez Rus",
        ("Alenka", "Krasny Oktyabr", "Lays", "Yubileynoye"),
        (
            ("Milk chocolate", (("90 g", 99.90), ("200 g", 199.90))),
            ("Potato chips", (("140 g", 139.90), ("70 g", 79.90))),
            ("Biscuits", (("112 g", 54.90),)),
            ("Sunflower seeds", (("200 g", 89.90),)),
            ("Zefir", (("250 g", 119.90),)),
        ),
    ),
    "Grocery": (
        "Efko",
        ("Makfa", "Uvelka", "Sloboda", "Mistral"),
        (
            ("Buckwheat", (("900 g", 99.90), ("400 g", 54.90))),
            ("Spaghetti", (("450 g", 79.90),)),
            ("Sunflower oil", (("1 l", 149.90),)),
            ("Rice long grain", (("900 g", 119.90),)),
            ("Sugar", (("1 kg", 89.90),)),
            ("Mayonnaise 67%", (("400 ml", 119.90),)),
            ("Oat flakes", (("500 g", 69.90),)),
        ),
    ),
    "Frozen": (
        "Talosto",
        ("Talosto", "Sibirskaya Kollektsiya"),
        (
            ("Pelmeni", (("800 g", 349.90), ("400 g", 189.90))),
            ("Vareniki with potatoes", (("800 g", 199.90),)),
            ("Ice cream plombir", (("80 g", 69.90), ("400 g", 249.90))),
            ("Frozen vegetables mix", (("400 g", 129.90),)),
        ),
    ),
    "Household": (
        "Henkel Rus",
        ("Persil", "Fairy", "Domestos", "Zewa"),
        (
            ("Laundry detergent", (("3 kg", 899.90), ("1.5 kg", 499.90))),
            ("Dishwashing liquid", (("450 ml", 149.90), ("900 ml", 259.90))),
            ("Toilet paper", (("4 rolls", 179.90), ("8 rolls", 329.90))),
            ("Cleaning gel", (("750 ml", 219.90),)),
        ),
    ),
    "Personal care": (
        "Procter and Gamble Russia",
        ("Head and Shoulders", "Nevskaya Kosmetika", "Chistaya Liniya"),
        (
            ("Shampoo", (("400 ml", 389.90), ("200 ml", 229.90))),
            ("Toothpaste", (("100 ml", 149.90),)),
            ("Shower gel", (("250 ml", 199.90),)),
            ("Baby soap", (("90 g", 49.90),)),
        ),
    ),
}

#: The row defects the generator can write: the contract's reasons but ``record_too_long``
#: (a line longer than a setting). Their order numbers the defect codes (0 is valid).
DEFECTS: tuple[str, ...] = tuple(r for r in REASONS if r != "record_too_long")


def non_pii_texts() -> list[str]:
    """Every plain text the generator writes outside personal fields (for leak checks).

    Returns:
        Cities, streets, region and format words, first names and catalogue words.
    """
    texts: list[str] = [*ALL_CITIES, *STREETS, *FEMALE_FIRST, *MALE_FIRST, *REGIONS]
    texts += list(REGION_WORDS.values()) + list(FORMAT_WORDS.values())
    for category, (supplier, brands, items) in CATALOGUE.items():
        texts += [category, supplier, *brands]
        texts += [name for name, _ in items]
    return texts
