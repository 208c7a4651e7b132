"""The synthetic E2E generator: random MRs, then human-like descriptions from sentence plans.

Written for this project: sentence plans and wording are ours; the slot values (`VALUES`)
and the venue and landmark names (`NAMES`, `LANDMARKS`) are E2E's, facts of the published
dataset, so that the embedded models speak the ontology real E2E data uses. Everything is deterministic by seed.

- `sample_mr` draws an MR; `split_of_mr` fixes its split by a hash, so splits never share an
  MR whatever the seed;
- `realize` writes one description of an MR (every slot said once, the name always there);
- `synthetic_e2e` builds a dataset of one split with several references per MR;
- `synthetic_pretraining_corpus` (and `synthetic_sentences`) are the embedded tiny model's
  pretraining text: descriptions of training-split MRs, some after a `fact_sheet` of their
  facts in a plain format that is not E2E's.
"""

from __future__ import annotations

import hashlib
import random

from prefixlab.e2e.dataset import E2EDataset, check_split
from prefixlab.e2e.mr import SLOTS, canonical_mr, format_mr, parse_mr

# E2E's own venue and landmark names (facts of the published dataset, so that a model
# pretrained here knows the names real E2E data uses); every sentence around them is ours.
NAMES = (
    "Alimentum", "Aromi", "Bibimbap House", "Blue Spice", "Browns Cambridge", "Clowns",
    "Cocum", "Cotto", "Fitzbillies", "Giraffe", "Green Man", "Loch Fyne", "Midsummer House",
    "Strada", "Taste of Cambridge", "The Cambridge Blue", "The Cricketers", "The Dumpling Tree",
    "The Eagle", "The Golden Curry", "The Golden Palace", "The Mill", "The Olive Grove",
    "The Phoenix", "The Plough", "The Punter", "The Rice Boat", "The Twenty Two", "The Vaults",
    "The Waterman", "The Wrestlers", "Travellers Rest Beefeater", "Wildwood", "Zizzi",
)  # fmt: skip
LANDMARKS = (
    "All Bar One", "Avalon", "Burger King", "Café Adriatic", "Café Brazil", "Café Rouge",
    "Café Sicilia", "Clare Hall", "Crowne Plaza Hotel", "Express by Holiday Inn",
    "Rainbow Vegetarian Café", "Raja Indian Cuisine", "Ranch", "The Bakers",
    "The Portland Arms", "The Rice Boat", "The Six Bells", "The Sorrento", "Yippee Noodle Bar",
)  # fmt: skip
# Value inventories of the E2E format.
VALUES = {
    "eatType": ("coffee shop", "pub", "restaurant"),
    "food": ("Chinese", "English", "French", "Fast food", "Indian", "Italian", "Japanese"),
    "priceRange": ("cheap", "moderate", "high", "less than £20", "£20-25", "more than £30"),
    "customer rating": ("low", "average", "high", "1 out of 5", "3 out of 5", "5 out of 5"),
    "area": ("city centre", "riverside"),
    "familyFriendly": ("yes", "no"),
}
# How often each optional slot appears in a sampled MR (E2E MRs have 3 to 8 slots).
SLOT_RATES = {
    "eatType": 0.75,
    "food": 0.7,
    "priceRange": 0.65,
    "customer rating": 0.65,
    "area": 0.7,
    "familyFriendly": 0.65,
    "near": 0.45,
}
# Which MRs belong to which split: a hash of the canonical MR, out of 100 buckets.
SPLIT_BUCKETS = {"train": range(0, 80), "validation": range(80, 90), "test": range(90, 100)}
DEFAULT_N_MRS = {"train": 1000, "validation": 250, "test": 250}


def split_of_mr(mr: str | dict[str, str]) -> str:
    """The split an MR belongs to ("train", "validation" or "test"), fixed by a hash of it.

    Every synthetic MR, whatever the seed, lands in exactly one split, so splits never share
    an MR, and the pretraining corpus (train MRs only) never realizes a validation/test MR.
    """
    text = format_mr(mr) if isinstance(mr, dict) else canonical_mr(mr)
    bucket = int(hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest(), 16) % 100
    for split, buckets in SPLIT_BUCKETS.items():
        if bucket in buckets:
            return split
    raise AssertionError("unreachable: buckets cover 0..99")


def sample_mr(rng: random.Random) -> dict[str, str]:
    """One random MR (canonical slot order) with a name and 2 to 7 other slots."""
    while True:
        mr = {"name": rng.choice(NAMES)}
        for slot in SLOTS[1:]:
            if rng.random() < SLOT_RATES[slot]:
                mr[slot] = rng.choice(LANDMARKS) if slot == "near" else rng.choice(VALUES[slot])
        if len(mr) >= 3:
            return mr


def _price_words(value: str) -> dict[str, list[str]]:
    """Phrases for a numeric price: 'amount' (after 'cost'), 'prices' (after 'prices'),
    'range' (after 'a price range of'), 'priced' (after 'priced')."""
    if value == "less than £20":
        return {
            "amount": ["less than £20", "under £20", "below £20", "less than 20 pounds",
                       "under twenty pounds", "less than twenty pounds", "no more than £20"],
            "prices": ["under £20", "below £20", "of less than £20", "less than £20",
                       "lower than £20"],
            "range": ["less than £20", "under £20", "below £20", "less than 20 pounds"],
            "priced": ["under £20", "below £20", "at less than £20", "at under 20 pounds"],
        }  # fmt: skip
    if value == "more than £30":
        return {
            "amount": ["more than £30", "over £30", "above £30", "more than 30 pounds",
                       "over thirty pounds", "more than thirty pounds"],
            "prices": ["over £30", "above £30", "of more than £30", "more than £30",
                       "higher than £30"],
            "range": ["more than £30", "over £30", "above £30", "more than 30 pounds"],
            "priced": ["over £30", "above £30", "at more than £30", "at over 30 pounds"],
        }  # fmt: skip
    if value == "£20-25":
        return {
            "amount": ["£20-25", "£20 to £25", "between £20 and £25", "20 to 25 pounds",
                       "£20-£25", "twenty to twenty-five pounds", "around £20-25"],
            "prices": ["of £20-25", "between £20 and £25", "in the £20-25 range",
                       "from £20 to £25", "of £20-£25", "ranging from £20 to £25"],
            "range": ["£20-25", "£20 to £25", "£20-£25", "20-25 pounds"],
            "priced": ["at £20-25", "between £20 and £25", "at £20 to £25"],
        }  # fmt: skip
    return {"amount": [value], "prices": ["of " + value], "range": [value], "priced": [value]}


# Number words for the "N out of 5" ratings.
_STAR_WORDS = {"1": "one", "3": "three", "5": "five"}


def _forms(slot: str, value: str, rng: random.Random) -> dict[str, list[str]]:
    """Ways to say one fact about the venue, by grammatical role.

    mod: before the noun ("an Italian pub"); cop: after "is"; vp: a verb phrase after the
    subject; pp: after the noun ("a pub near X"); front: at the start of a sentence, before a
    comma; sent: a whole sentence of its own. Roles a fact cannot fill are left out.
    """
    if slot == "food":
        if value == "Fast food":
            adj, dishes = (
                "fast food",
                ["fast food", "fast food", "fast food meals", "quick fast food"],
            )
        else:
            adj = rng.choice(["English", "English", "British"]) if value == "English" else value
            dishes = [
                f"{adj} food",
                f"{adj} food",
                f"{adj} food",
                f"{adj} cuisine",
                f"{adj} dishes",
                f"{adj} meals",
                f"{adj} foods",
                f"{adj} style food",
                f"traditional {adj} food",
                f"{adj} fare",
            ]
            if value == "English":
                dishes += ["an English breakfast", "English breakfast food"]
        dish = rng.choice(dishes)
        return {
            "mod": [adj],
            "cop": [f"known for its {dish}", f"popular for its {dish}", f"famous for its {dish}",
                    f"a place for {dish}"],
            "vp": [f"serves {dish}", f"serves {dish}", f"offers {dish}", f"specialises in {dish}",
                   f"provides {dish}", f"has {dish} on the menu", f"sells {dish}",
                   f"specializes in {dish}", f"serves up {dish}", f"has a menu of {dish}"],
            "pp": [f"serving {dish}", f"offering {dish}", f"with {dish} on the menu",
                   f"selling {dish}", f"providing {dish}", f"that serves {dish}",
                   f"specialising in {dish}", f"that provides {dish}"],
            "sent": [f"They serve {dish}.", f"The food is {adj}.", f"You can eat {dish} there.",
                     f"The menu is {adj}.", f"It serves {dish}.", f"It's a place for {dish}.",
                     f"They offer {dish}.", f"It provides {dish}.",
                     f"If you like {dish}, this is the place for you."],
        }  # fmt: skip
    if slot == "priceRange":
        words = {
            "cheap": (["cheap", "low-priced", "inexpensive", "budget", "affordable", "low cost",
                       "cheaply priced", "low-cost"],
                      ["cheap", "inexpensive", "low-priced", "in the cheap price range",
                       "affordable", "cheap to eat at", "in the low price range",
                       "cheaply priced"],
                      ["low prices", "cheap prices", "a cheap price range", "affordable prices",
                       "a low price range", "cheap food", "low-cost food"]),
            "moderate": (["moderately priced", "mid-priced", "reasonably priced",
                          "moderate-priced", "mid-range", "average-priced"],
                         ["moderately priced", "reasonably priced", "in the moderate price range",
                          "mid-priced", "in the mid price range", "fairly priced",
                          "in the average price range"],
                         ["moderate prices", "a moderate price range", "average prices",
                          "reasonable prices", "moderate pricing", "a medium price range",
                          "mid-range prices"]),
            "high": (["expensive", "high-priced", "pricey", "upmarket", "high-end", "costly",
                      "high price range"],
                     ["expensive", "pricey", "high-priced", "in the high price range",
                      "quite expensive", "on the expensive side", "in the higher price range"],
                     ["high prices", "a high price range", "expensive prices",
                      "high pricing", "expensive food", "a higher price range"]),
        }  # fmt: skip
        if value in words:
            mods, cops, nps = words[value]
            np_ = rng.choice(nps)
            level = {"cheap": "low", "moderate": "moderate", "high": "high"}[value]
            return {
                "mod": mods,
                "cop": cops,
                "vp": [f"has {np_}", f"charges {np_}" if "range" not in np_ else f"has {np_}",
                       f"offers {np_}", f"has {np_}"],
                "pp": [f"with {np_}", f"offering {np_}", f"that has {np_}"],
                "sent": [f"Prices are {level}.", f"It has {np_}.",
                         f"The price range is {value}.", f"Its prices are {level}.",
                         f"The prices are {level}.", f"It's {rng.choice(cops)}."],
            }  # fmt: skip
        w = _price_words(value)
        amount, prices, range_ = (rng.choice(w[k]) for k in ("amount", "prices", "range"))
        return {
            "cop": [f"priced {rng.choice(w['priced'])}", f"in the {range_} price range",
                    f"in the price range of {range_}"],
            "vp": [f"has prices {prices}", f"has a price range of {range_}", f"charges {amount}",
                   f"serves meals for {range_}", f"costs {amount} per person",
                   f"offers meals for {amount}", f"has meals for {amount}"],
            "pp": [f"with prices {prices}", f"with a price range of {range_}",
                   f"with meals costing {amount}", f"in the {range_} price range",
                   f"where meals cost {amount}", f"where you can eat for {amount}"],
            "sent": [f"Meals cost {amount}.", f"Prices are {prices.removeprefix('of ')}.",
                     f"The price range is {range_}.", f"A meal there costs {amount}.",
                     f"Expect to pay {amount} per person.", f"You can eat there for {amount}.",
                     f"Its price range is {range_}."],
        }  # fmt: skip
    if slot == "customer rating":
        words = {
            "low": (["low-rated", "poorly rated", "badly rated", "low rated", "poorly-rated"],
                    ["poorly rated", "low-rated", "rated low by customers", "rated low",
                     "poorly reviewed"],
                    ["a low customer rating", "a low rating", "poor reviews", "low ratings",
                     "low customer ratings", "a poor customer rating", "bad reviews",
                     "low customer satisfaction"],
                    ["Customers rate it low.", "Its customer rating is low.", "Reviews are poor.",
                     "Customers have rated it low.", "It has received low ratings.",
                     "Its customer ratings are low."]),
            "average": (["averagely rated", "average-rated", "average rated"],
                        ["averagely rated", "rated average by customers", "rated average",
                         "rated as average"],
                        ["an average customer rating", "average reviews", "an average rating",
                         "average customer ratings", "a decent customer rating",
                         "an okay rating", "average customer satisfaction"],
                        ["Its customer rating is average.", "Customers rate it as average.",
                         "Reviews are average.", "Customers give it an average rating.",
                         "It has an average rating from customers."]),
            "high": (["highly rated", "highly-rated", "top-rated", "well-reviewed",
                      "high rated", "well rated", "high customer rated"],
                     ["highly rated", "rated highly by customers", "very well reviewed",
                      "rated high", "well liked by customers", "rated high by customers"],
                     ["a high customer rating", "high ratings", "excellent reviews",
                      "a high rating", "high customer ratings", "great reviews",
                      "high customer satisfaction"],
                     ["Customers rate it highly.", "Its customer rating is high.",
                      "Reviews are excellent.", "Customers give it high ratings.",
                      "It is rated highly by its customers.", "Its customers love it."]),
        }  # fmt: skip
        if value in words:
            mods, cops, nps, sents = words[value]
            np_ = rng.choice(nps)
            return {
                "mod": mods,
                "cop": cops,
                "vp": [f"has {np_}", f"gets {np_}", f"has received {np_}", f"receives {np_}",
                       f"has earned {np_}", f"boasts {np_}" if value == "high" else f"has {np_}"],
                "pp": [f"with {np_}", f"that has {np_}", f"which gets {np_}"],
                "sent": sents,
            }  # fmt: skip
        stars = value.split()[0]
        word = _STAR_WORDS[stars]
        star_word = "star" if stars == "1" else "stars"
        score = rng.choice(
            [
                value,
                value,
                value,
                f"{stars} out of 5 stars",
                f"{stars} {star_word}",
                f"{word} out of five",
                f"{word} {star_word}",
                f"{word} out of five stars",
                f"{stars} out of five",
            ]
        )
        return {
            "mod": [f"{stars}-star", f"{stars} star rated", f"{word}-star", f"{word} star",
                    f"{stars} star"],
            "cop": [f"rated {score}", f"rated {score} by customers", f"rated {score} by its customers",
                    f"given {score} by customers"],
            "vp": [f"has a customer rating of {score}", f"has a rating of {score}",
                   f"has a {value} rating", f"has a {stars}-star rating", f"scores {score}",
                   f"has a {word} star rating", f"is rated {score}",
                   f"has received a customer rating of {score}", f"receives {score} from customers",
                   f"has a {value} customer rating"],
            "pp": [f"with a customer rating of {score}", f"with a {value} rating",
                   f"rated {score}", f"with a {word}-star rating", f"with a rating of {score}",
                   f"that has a customer rating of {score}"],
            "sent": [f"Customers rate it {score}.", f"Its customer rating is {score}.",
                     f"It is rated {score}.", f"It has a customer rating of {score}.",
                     f"Customers have rated it {score}.", f"It's rated {score}.",
                     f"It has a {word} star rating."],
        }  # fmt: skip
    if slot == "area":
        if value == "city centre":
            return {
                "mod": ["city centre", "city-centre", "central", "city center", "centrally located"],
                "cop": ["in the city centre", "located in the city centre",
                        "in the centre of the city", "in the centre of town", "central",
                        "in the city center", "located in the center of the city",
                        "situated in the city centre", "in the heart of the city",
                        "based in the city centre", "centrally located"],
                "vp": ["sits in the city centre", "can be found in the city centre",
                       "is situated in the city centre", "is located in the city center",
                       "is based in the city centre", "lies in the centre of the city"],
                "pp": ["in the city centre", "in the centre of town", "located in the city centre",
                       "in the heart of the city", "in the city center", "in the centre of the city",
                       "situated in the city centre", "located in the center of the city"],
                "front": ["In the city centre", "In the centre of town", "Located in the city centre",
                          "Right in the city centre", "In the city center",
                          "Located in the center of the city", "In the heart of the city"],
                "sent": ["You can find it in the city centre.", "It is located in the city centre.",
                         "It's in the city centre.", "It is in the centre of the city.",
                         "Its location is the city centre.", "It is located in the city center."],
            }  # fmt: skip
        return {
            "mod": ["riverside", "river side"],
            "cop": ["in the riverside area", "by the riverside", "on the riverside",
                    "located by the river", "located in the riverside area", "by the river",
                    "situated by the river", "on the river side", "along the river",
                    "near the river", "in the riverside", "located on the riverside"],
            "vp": ["sits on the riverside", "can be found by the riverside",
                   "is situated in the riverside area", "is located along the riverside",
                   "overlooks the river", "is based in the riverside area",
                   "lies by the river"],
            "pp": ["by the riverside", "in the riverside area", "on the riverside",
                   "located by the river", "by the river", "along the river",
                   "located in the riverside area", "situated on the riverside",
                   "near the river"],
            "front": ["By the riverside", "In the riverside area", "Down by the river",
                      "On the riverside", "Located in the riverside area", "Along the river",
                      "By the river", "Located on the riverside"],
            "sent": ["You can find it by the riverside.", "It is located in the riverside area.",
                     "It's by the river.", "It is situated by the river.",
                     "Its location is the riverside.", "It has a riverside location.",
                     "It is located in riverside."],
        }  # fmt: skip
    if slot == "familyFriendly":
        if value == "yes":
            return {
                "mod": ["family-friendly", "kid-friendly", "child-friendly", "family friendly",
                        "kid friendly", "children friendly", "family oriented", "kids friendly",
                        "family-oriented"],
                "cop": ["family-friendly", "kid friendly", "child friendly", "suitable for families",
                        "great for families", "welcoming to children", "family friendly",
                        "kid-friendly", "children friendly", "good for families",
                        "a family friendly place", "ideal for families", "open to families",
                        "friendly to families"],
                "vp": ["welcomes families", "welcomes children", "caters for families",
                       "allows children", "allows kids", "welcomes kids",
                       "is great for the whole family", "has a family-friendly atmosphere",
                       "offers a family friendly environment", "is suitable for children"],
                "pp": ["suitable for families", "welcoming children", "for the whole family",
                       "that is family friendly", "that welcomes kids",
                       "with a family-friendly atmosphere", "where children are welcome",
                       "that is kid friendly"],
                "sent": ["Children are welcome.", "Families are welcome.", "Kids are welcome.",
                         "It is a good place to bring the kids.", "It's family friendly.",
                         "It is kid friendly.", "It's a place for the whole family.",
                         "Bring the whole family.", "Children are allowed.",
                         "It is family-friendly."],
            }  # fmt: skip
        return {
            "mod": ["adults-only", "non-family-friendly", "adult-only", "non family-friendly",
                    "adult", "non-family friendly", "non kid friendly"],
            "cop": ["not family-friendly", "not kid friendly", "not child friendly",
                    "not suitable for children", "adults only", "not a place for children",
                    "not family friendly", "not kid-friendly", "not children friendly",
                    "not suitable for families", "not a family-friendly place",
                    "not for families", "not good for families"],
            "vp": ["does not welcome children", "does not cater for families",
                   "does not allow children", "doesn't allow kids", "isn't family friendly",
                   "is not child friendly", "isn't kid friendly", "does not allow kids",
                   "is not suitable for children", "has an adults only policy"],
            "pp": ["unsuitable for children", "for adults only", "not suitable for children",
                   "that is not family friendly", "that does not allow children",
                   "that isn't kid friendly", "with no children allowed"],
            "sent": ["Children are not welcome.", "It is not family-friendly.",
                     "It is not a good choice for families.", "It is for adults only.",
                     "It isn't family friendly.", "It's not kid friendly.",
                     "Children are not allowed.", "No children are allowed.",
                     "It is not child friendly.", "It is not family friendly."],
        }  # fmt: skip
    if slot == "near":
        the = rng.choice(["", "", "", "the "]) if not value.startswith("The ") else ""
        place = the + value
        return {
            "cop": [f"near {place}", f"located near {place}", f"close to {place}",
                    f"not far from {place}", f"next to {place}", f"a short walk from {place}",
                    f"near to {place}", f"situated near {place}", f"beside {place}",
                    f"just around the corner from {place}", f"in the vicinity of {place}",
                    f"only a few minutes from {place}"],
            "vp": [f"sits near {place}", f"can be found near {place}", f"lies close to {place}",
                   f"is located near {place}", f"is close to {place}", f"is near {place}",
                   f"is right next to {place}", f"is situated near {place}"],
            "pp": [f"near {place}", f"close to {place}", f"not far from {place}",
                   f"located near {place}", f"next to {place}", f"beside {place}",
                   f"near to {place}", f"by {place}", f"situated near {place}",
                   f"located close to {place}", f"in the vicinity of {place}"],
            "front": [f"Near {place}", f"Close to {place}", f"Not far from {place}",
                      f"Located near {place}", f"Just by {place}", f"Next to {place}",
                      f"Situated near {place}", f"Located next to {place}"],
            "sent": [f"It is near {place}.", f"You will find it close to {place}.",
                     f"It's near {place}.", f"It is located near {place}.",
                     f"It's close to {place}.", f"It can be found near {place}.",
                     f"It is next to {place}.", f"{value} is nearby."],
        }  # fmt: skip
    raise ValueError(f"No wording for slot {slot!r}; slots other than name are {SLOTS[1:]}.")


_ADJECTIVE_ORDER = ("customer rating", "priceRange", "familyFriendly", "area", "food")
_NOUNS = {
    "coffee shop": ["coffee shop", "coffee shop", "coffee shop", "café", "coffee house"],
    "pub": ["pub", "pub", "pub", "bar"],
    "restaurant": ["restaurant", "restaurant", "restaurant", "eatery"],
    None: ["place", "venue", "spot", "establishment"],
}


def _article(phrase: str) -> str:
    word = phrase.split()[0].lower()
    vowel = word[0] in "aeiou" and not word.startswith(("one", "uni", "eu"))
    return ("an " if vowel or word.startswith("8") else "a ") + phrase


def _join(items: list[str], rng: random.Random, negative_last: bool = False) -> str:
    """'a', 'a and b', 'a, b and c' (sometimes with an Oxford comma, or 'but' before a negative)."""
    if len(items) == 1:
        return items[0]
    last = "but" if negative_last and rng.random() < 0.6 else "and"
    if len(items) == 2:
        return f"{items[0]} {last} {items[1]}"
    comma = "," if rng.random() < 0.3 else ""
    return ", ".join(items[:-1]) + f"{comma} {last} {items[-1]}"


def _predicate(facts: list[tuple[str, str]], rng: random.Random) -> str:
    """One verb phrase saying every fact: copulas share one 'is' ("is cheap and central").

    A negative fact (not family-friendly) said last after positive ones may get 'but'.
    """
    cops: list[tuple[str, bool]] = []  # (text after "is", negative)
    vps: list[tuple[str, bool]] = []
    for slot, value in facts:
        forms = _forms(slot, value, rng)
        negative = slot == "familyFriendly" and value == "no"
        if rng.random() < 0.5 and forms.get("vp"):
            vps.append((rng.choice(forms["vp"]), negative))
        else:
            cops.append((rng.choice(forms["cop"]), negative))
    parts = []
    if cops:
        but = cops[-1][1] and len(cops) > 1
        # a 'but' inside the copulas already contrasts; do not add a second one outside
        parts.append(
            ("is " + _join([c for c, _ in cops], rng, negative_last=but), cops[-1][1] and not but)
        )
    parts += vps
    if rng.random() < 0.5:
        parts.reverse()
    return _join([p for p, _ in parts], rng, negative_last=parts[-1][1] and len(parts) > 1)


def _cap(text: str) -> str:
    return text[0].upper() + text[1:] if text else text


def realize(mr: dict[str, str] | str, rng: random.Random | int | None = None) -> str:
    """One human-like description of an MR: a random sentence plan, then random wording.

    The plan picks how many facts go into the opening sentence (as adjectives before the noun,
    phrases after it or a relative clause), which opening pattern to use, the order of the
    facts, and how the rest is grouped into one or two more sentences with a pronoun, the noun
    or the name as subject. Every slot of the MR is said exactly once; the name always appears.
    `rng` is a random.Random or a seed (same seed, same text).

    Raises:
        ValueError: for an MR without a name, or a value outside the E2E inventory (`VALUES`;
            any food and any name or landmark are accepted).
    """
    if isinstance(mr, str):
        mr = parse_mr(mr)
    if "name" not in mr:
        raise ValueError(f"An MR needs a name slot to be realized, got slots {list(mr)}.")
    for slot in ("eatType", "priceRange", "customer rating", "area", "familyFriendly"):
        if slot in mr and mr[slot] not in VALUES[slot]:
            raise ValueError(
                f"The generator has no wording for {slot}[{mr[slot]}]; use one of {VALUES[slot]}."
            )
    if not isinstance(rng, random.Random):
        rng = random.Random(rng)
    name = mr["name"]
    noun = rng.choice(_NOUNS[mr.get("eatType")])
    facts = [(slot, mr[slot]) for slot in SLOTS[2:] if slot in mr]
    if rng.random() < 0.55:
        rng.shuffle(facts)

    # Opening sentence: the name, the noun phrase, and the facts attached to it.
    n_intro = min(len(facts), rng.choice([0, 1, 1, 2, 2, 2, 3, 3, 4]))
    intro, rest = facts[:n_intro], facts[n_intro:]
    mods, pps, rels, fronts = [], [], [], []
    for slot, value in intro:
        forms = _forms(slot, value, rng)
        role = rng.choice(["mod", "mod", "pp", "pp", "rel", "front"])
        if role == "front" and (fronts or "front" not in forms):
            role = "pp"
        if role == "mod" and (len(mods) >= 2 or "mod" not in forms):
            role = "pp"
        if role == "pp" and len(pps) >= 2:
            role = "rel"
        if role == "mod":
            mods.append((slot, rng.choice(forms["mod"])))
        elif role == "pp":
            pps.append(rng.choice(forms["pp"]))
        elif role == "front":
            fronts.append(rng.choice(forms["front"]))
        else:
            rels.append((slot, value))
    mods.sort(key=lambda m: _ADJECTIVE_ORDER.index(m[0]))
    np_ = _article(" ".join([m for _, m in mods] + [noun]))
    after = (" " + _join(pps, rng)) if pps else ""
    rel = (" " + rng.choice(["that", "which"]) + " " + _predicate(rels, rng)) if rels else ""
    called = rng.choice(["called", "named", "called", "by the name of"])
    openings = [  # (sentence, can take a fronted phrase)
        (f"{name} is {np_}{after}{rel}.", True),
        (f"{name} is {np_}{after}{rel}.", True),
        (f"There is {np_} {called} {name}{after}{rel}.", True),
        (f"{name} is the name of {np_}{after}{rel}.", True),
    ]
    if len(pps) <= 1:
        openings.append((f"There is {np_}{after} {called} {name}{rel}.", True))
    if not rels:
        openings += [
            (f"If you are looking for {np_}{after}, try {name}.", False),
            (f"{_cap(np_)}{after}, {name} is worth a visit.", False),
            (f"Visit {name}, {np_}{after}.", False),
            (f"For {np_}{after}, go to {name}.", False),
            (f"Come to {name}, {np_}{after}.", False),
        ]
    else:
        openings += [
            (f"{name} is {np_}{after} and {_predicate(rels, rng)}.", True),
            (f"{_cap(np_)} {called} {name}{after} {_predicate(rels, rng)}.", True),
            (f"{name}, {np_}{after}, {_predicate(rels, rng)}.", True),
        ]
    if fronts:
        openings = [(text, ok) for text, ok in openings if ok]
    sentence = rng.choice(openings)[0]
    if fronts:
        first = sentence if sentence.startswith(name) else sentence[0].lower() + sentence[1:]
        sentence = f"{fronts[0]}, {first}"
    sentences = [sentence]

    # The remaining facts: one or two more sentences.
    chunks: list[list[tuple[str, str]]] = []
    if rest:
        cut = rng.randint(1, len(rest)) if len(rest) > 1 and rng.random() < 0.45 else len(rest)
        chunks = [rest[:cut], rest[cut:]] if cut < len(rest) else [rest]
    for i, chunk in enumerate(chunks):
        if len(chunk) == 1 and rng.random() < 0.35:
            sentences.append(rng.choice(_forms(*chunk[0], rng)["sent"]))
            continue
        the_noun = noun if mr.get("eatType") or noun != "establishment" else "place"
        subject = rng.choice(["It", "It", "It", f"The {the_noun}", f"This {the_noun}", name])
        front = ""
        placeable = [f for f in chunk if f[0] in ("area", "near")]
        if len(chunk) > 1 and placeable and rng.random() < 0.25:
            chunk = [f for f in chunk if f is not placeable[0]]
            front = rng.choice(_forms(*placeable[0], rng)["front"]) + ", "
            subject = subject if subject == name else subject[0].lower() + subject[1:]
        predicate = _predicate(chunk, rng)
        if i == len(chunks) - 1 and len(sentences) > 1 and rng.random() < 0.4:
            predicate = (
                "is also " + predicate[3:] if predicate.startswith("is ") else "also " + predicate
            )
        sentences.append(f"{front}{subject} {predicate}.")
    return " ".join(sentences)


def _realizations(mr: dict[str, str], k: int, rng: random.Random) -> list[str]:
    """k different realizations of one MR (different as far as 50 tries allow)."""
    refs: list[str] = []
    for _ in range(50 * k):
        text = realize(mr, rng)
        if text not in refs:
            refs.append(text)
        if len(refs) == k:
            return refs
    return refs + [realize(mr, rng) for _ in range(k - len(refs))]


def _sample_mrs(split: str, n_mrs: int, rng: random.Random) -> list[dict[str, str]]:
    """n_mrs distinct MRs of one split, drawn by rejection on `split_of_mr`."""
    seen: set[str] = set()
    mrs: list[dict[str, str]] = []
    while len(mrs) < n_mrs:
        mr = sample_mr(rng)
        text = format_mr(mr)
        if text not in seen and split_of_mr(text) == split:
            seen.add(text)
            mrs.append(mr)
    return mrs


def synthetic_e2e(
    split: str = "train",
    *,
    n_mrs: int | None = None,
    refs_per_mr: int = 4,
    seed: int = 0,
) -> E2EDataset:
    """A synthetic E2E-format dataset made by this project's generator.

    Args:
        split: "train", "validation" or "test". Splits never share an MR (see `split_of_mr`).
        n_mrs: number of distinct MRs; default 1000 for train, 100 for validation and test.
        refs_per_mr: references per MR (distinct realizations), written on consecutive rows.
        seed: same seed, same data. Different seeds give different MRs of the same split.

    Returns:
        E2EDataset with n_mrs * refs_per_mr (mr, ref) pairs, named like "synthetic-train(seed=0)".
    """
    check_split(split)
    n_mrs = DEFAULT_N_MRS[split] if n_mrs is None else n_mrs
    if isinstance(n_mrs, bool) or not isinstance(n_mrs, int) or n_mrs < 1:
        raise ValueError(f"n_mrs must be an int >= 1, got {n_mrs!r}.")
    if isinstance(refs_per_mr, bool) or not isinstance(refs_per_mr, int) or refs_per_mr < 1:
        raise ValueError(f"refs_per_mr must be an int >= 1, got {refs_per_mr!r}; E2E has about 8.")
    rng = random.Random(f"prefixlab-e2e:{split}:{seed}")
    pairs = []
    for mr in _sample_mrs(split, n_mrs, rng):
        text = format_mr(mr)
        pairs += [(text, ref) for ref in _realizations(mr, refs_per_mr, rng)]
    return E2EDataset(pairs, f"synthetic-{split}(seed={seed})")


def synthetic_pretraining_pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """n (mr, realization) pairs for pretraining, each from a fresh training-split MR.

    The MRs are returned so that tests can check the corpus never realizes a validation or
    test MR; pretraining itself uses only the text (`synthetic_sentences`).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}.")
    rng = random.Random(f"prefixlab-pretrain:{seed}")
    pairs = []
    while len(pairs) < n:
        mr = sample_mr(rng)
        text = format_mr(mr)
        if split_of_mr(text) == "train":
            pairs.append((text, realize(mr, rng)))
    return pairs


# Keys of the fact sheets in the pretraining corpus: deliberately not E2E's slot names.
FACT_KEYS = {
    "name": "name",
    "eatType": "type",
    "food": "cuisine",
    "priceRange": "price",
    "customer rating": "rating",
    "area": "area",
    "familyFriendly": "kids",
    "near": "near",
}


def fact_sheet(mr: dict[str, str] | str, rng: random.Random) -> str:
    """The facts of an MR in the pretraining corpus's own plain format, in a shuffled order.

    `name=The Copper Pot; cuisine=Italian; kids=yes` — not E2E's `name[The Copper Pot]`:
    other keys (`FACT_KEYS`), other punctuation, any order. Values follow `=` with no space,
    as they follow `[` in an MR, so a value's tokens are the same in both formats.
    """
    mr = parse_mr(mr) if isinstance(mr, str) else mr
    slots = list(mr)
    rng.shuffle(slots)
    return "; ".join(f"{FACT_KEYS[slot]}={mr[slot]}" for slot in slots)


def synthetic_pretraining_corpus(n: int, seed: int = 0, fact_share: float = 0.4) -> list[str]:
    """The tiny model's pretraining documents: n restaurant descriptions of training-split MRs,
    a `fact_share` of them preceded by their `fact_sheet` and a newline.

    The fact sheets are what teaches the model to copy from its context (names, landmarks,
    values), as web text teaches real language models; E2E's own MR format never appears.
    """
    if not (isinstance(fact_share, (int, float)) and 0 <= fact_share <= 1):
        raise ValueError(f"fact_share must be a number in [0, 1], got {fact_share!r}; try 0.4.")
    rng = random.Random(f"prefixlab-facts:{seed}")
    docs = []
    for mr, text in synthetic_pretraining_pairs(n, seed):
        if rng.random() < fact_share:
            docs.append(f"{fact_sheet(mr, rng)}\n {text}")
        else:
            docs.append(text)
    return docs


def synthetic_sentences(n: int, seed: int = 0) -> list[str]:
    """n restaurant descriptions with no MR attached: the tiny model's pretraining text."""
    return [text for _, text in synthetic_pretraining_pairs(n, seed)]
