"""A template grammar of short everyday sentences, written by the project, correct in all six corpus languages.

It enlarges the built-in corpus for training the demo model: the same domains (family, food, colours, numbers,
time, weather, travel, places) recombined, so that a small model learns words and constructions instead of
memorising 130 sentences. Every pattern renders each language with its own grammar: German case, gender and
verb-second order, Spanish and French gender agreement, pro-drop and elision, Japanese in kana only (particle は
marked `{wa}` and へ marked `{e}`, as in `neuron_atlas.engine.sentences`), Chinese in simplified characters with the
right measure words. Vocabulary entries are tuples in the column order of the table they belong to.
"""
from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import MappingProxyType

from neuron_atlas.engine.example import CORPUS_LANGUAGES, CorpusError
from neuron_atlas.engine.sentences import SENTENCES, Sentence

_WRITTEN = {"{wa}": "は", "{e}": "へ"}
_SPOKEN = {"{wa}": "わ", "{e}": "え"}

Texts = dict[str, str]


# ---------------------------------------------------------------------------------------------------- vocabulary


@dataclass(frozen=True)
class Subject:
    """A sentence subject: English text and person (`1s`, `1p`, `3s`), each language's form, Spanish dative."""

    en: str
    person: str
    de: str
    es: str
    fr: str
    ja: str
    zh: str
    es_dat: str
    age: str = ""


#: Subjects. `es` is empty for pro-drop persons; `age` is the age group the age pattern uses ("" = none).
SUBJECTS: tuple[Subject, ...] = (
    Subject("I", "1s", "ich", "", "je", "わたし", "我", "me"),
    Subject("we", "1p", "wir", "", "nous", "わたしたち", "我们", "nos"),
    Subject("my father", "3s", "mein Vater", "mi padre", "mon père", "ちち", "我爸爸", "a mi padre le", "adult"),
    Subject("my mother", "3s", "meine Mutter", "mi madre", "ma mère", "はは", "我妈妈", "a mi madre le", "adult"),
    Subject("my sister", "3s", "meine Schwester", "mi hermana", "ma sœur", "いもうと", "我妹妹", "a mi hermana le",
            "adult"),
    Subject("my brother", "3s", "mein Bruder", "mi hermano", "mon frère", "あに", "我哥哥", "a mi hermano le",
            "adult"),
    Subject("my little brother", "3s", "mein kleiner Bruder", "mi hermano pequeño", "mon petit frère", "おとうと",
            "我弟弟", "a mi hermano pequeño le", "child"),
    Subject("my friend", "3s", "mein Freund", "mi amigo", "mon ami", "ともだち", "我的朋友", "a mi amigo le", "adult"),
    Subject("my uncle", "3s", "mein Onkel", "mi tío", "mon oncle", "おじ", "我叔叔", "a mi tío le", "adult"),
    Subject("my aunt", "3s", "meine Tante", "mi tía", "ma tante", "おば", "我阿姨", "a mi tía le", "adult"),
    Subject("my grandmother", "3s", "meine Großmutter", "mi abuela", "ma grand-mère", "そぼ", "我奶奶",
            "a mi abuela le", "old"),
    Subject("my grandfather", "3s", "mein Großvater", "mi abuelo", "mon grand-père", "そふ", "我爷爷",
            "a mi abuelo le", "old"),
    Subject("my son", "3s", "mein Sohn", "mi hijo", "mon fils", "むすこ", "我儿子", "a mi hijo le", "child"),
    Subject("my daughter", "3s", "meine Tochter", "mi hija", "ma fille", "むすめ", "我女儿", "a mi hija le", "child"),
    Subject("my niece", "3s", "meine Nichte", "mi sobrina", "ma nièce", "めい", "我侄女", "a mi sobrina le", "child"),
    Subject("my nephew", "3s", "mein Neffe", "mi sobrino", "mon neveu", "おい", "我侄子", "a mi sobrino le", "child"),
    Subject("my cousin", "3s", "mein Cousin", "mi primo", "mon cousin", "いとこ", "我表哥", "a mi primo le", "adult"),
    Subject("my wife", "3s", "meine Frau", "mi esposa", "ma femme", "つま", "我妻子", "a mi esposa le", "adult"),
    Subject("my husband", "3s", "mein Mann", "mi marido", "mon mari", "おっと", "我丈夫", "a mi marido le", "adult"),
    Subject("the teacher", "3s", "der Lehrer", "el profesor", "le professeur", "せんせい", "老师", "al profesor le",
            "adult"),
    Subject("the doctor", "3s", "der Arzt", "el médico", "le médecin", "いしゃ", "医生", "al médico le", "adult"),
    Subject("she", "3s", "sie", "ella", "elle", "かのじょ", "她", "a ella le"),
    Subject("he", "3s", "er", "él", "il", "かれ", "他", "a él le"),
)

_PERSON_INDEX = {"3s": 0, "1s": 1, "1p": 2}


def _form(forms: tuple[str, str, str], subject: Subject) -> str:
    """The verb form of `forms` = (3rd singular, 1st singular, 1st plural) that agrees with `subject`."""
    return forms[_PERSON_INDEX[subject.person]]


def _en_verb(forms: tuple[str, str], subject: Subject) -> str:
    """English (3rd singular, base) verb form for `subject`."""
    return forms[0] if subject.person == "3s" else forms[1]


#: Drinks: en, de (bare, accusative), es (bare), fr (partitive), ja, zh, es definite, fr definite, es plural.
DRINKS: tuple[tuple[str, ...], ...] = (
    ("coffee", "Kaffee", "café", "du café", "コーヒー", "咖啡", "el café", "le café"),
    ("tea", "Tee", "té", "du thé", "おちゃ", "茶", "el té", "le thé"),
    ("green tea", "grünen Tee", "té verde", "du thé vert", "りょくちゃ", "绿茶", "el té verde", "le thé vert"),
    ("water", "Wasser", "agua", "de l'eau", "みず", "水", "el agua", "l'eau"),
    ("milk", "Milch", "leche", "du lait", "ぎゅうにゅう", "牛奶", "la leche", "le lait"),
    ("orange juice", "Orangensaft", "zumo de naranja", "du jus d'orange", "オレンジジュース", "橙汁",
     "el zumo de naranja", "le jus d'orange"),
    ("apple juice", "Apfelsaft", "zumo de manzana", "du jus de pomme", "りんごジュース", "苹果汁",
     "el zumo de manzana", "le jus de pomme"),
)

#: Foods: en, de (bare), es (bare), fr (partitive), ja, zh, es definite, fr definite, es plural flag ("p" or "").
FOODS: tuple[tuple[str, ...], ...] = (
    ("bread", "Brot", "pan", "du pain", "パン", "面包", "el pan", "le pain", ""),
    ("rice", "Reis", "arroz", "du riz", "ごはん", "米饭", "el arroz", "le riz", ""),
    ("fish", "Fisch", "pescado", "du poisson", "さかな", "鱼", "el pescado", "le poisson", ""),
    ("apples", "Äpfel", "manzanas", "des pommes", "りんご", "苹果", "las manzanas", "les pommes", "p"),
    ("cheese", "Käse", "queso", "du fromage", "チーズ", "奶酪", "el queso", "le fromage", ""),
    ("noodles", "Nudeln", "fideos", "des nouilles", "めん", "面条", "los fideos", "les nouilles", "p"),
    ("eggs", "Eier", "huevos", "des œufs", "たまご", "鸡蛋", "los huevos", "les œufs", "p"),
    ("oranges", "Orangen", "naranjas", "des oranges", "オレンジ", "橙子", "las naranjas", "les oranges", "p"),
    ("strawberries", "Erdbeeren", "fresas", "des fraises", "いちご", "草莓", "las fresas", "les fraises", "p"),
    ("bananas", "Bananen", "plátanos", "des bananes", "バナナ", "香蕉", "los plátanos", "les bananes", "p"),
    ("cake", "Kuchen", "pastel", "du gâteau", "ケーキ", "蛋糕", "el pastel", "le gâteau", ""),
    ("tomatoes", "Tomaten", "tomates", "des tomates", "トマト", "西红柿", "los tomates", "les tomates", "p"),
    ("meat", "Fleisch", "carne", "de la viande", "にく", "肉", "la carne", "la viande", ""),
)


@dataclass(frozen=True)
class Activity:
    """A verb phrase: English (3s, base) verb + object, German/Spanish/French (3s, 1s, 1p) verb + object, ja, zh."""

    en: tuple[str, str]
    en_obj: str
    de: tuple[str, str, str]
    de_obj: str
    es: tuple[str, str, str]
    es_obj: str
    fr: tuple[str, str, str]
    fr_obj: str
    ja: str
    zh: str
    timed: bool = True


_DRINK = (("drinks", "drink"), ("trinkt", "trinke", "trinken"), ("bebe", "bebo", "bebemos"),
          ("boit", "bois", "buvons"))
_EAT = (("eats", "eat"), ("isst", "esse", "essen"), ("come", "como", "comemos"),
        ("mange", "mange", "mangeons"))

#: Language names: en, de, es, fr (with article), ja, zh.
LANGUAGE_NAMES: tuple[tuple[str, ...], ...] = (
    ("English", "Englisch", "inglés", "l'anglais", "えいご", "英语"),
    ("German", "Deutsch", "alemán", "l'allemand", "ドイツご", "德语"),
    ("French", "Französisch", "francés", "le français", "フランスご", "法语"),
    ("Spanish", "Spanisch", "español", "l'espagnol", "スペインご", "西班牙语"),
    ("Chinese", "Chinesisch", "chino", "le chinois", "ちゅうごくご", "中文"),
    ("Japanese", "Japanisch", "japonés", "le japonais", "にほんご", "日语"),
)


def _activities() -> tuple[Activity, ...]:
    acts = [Activity(_DRINK[0], d[0], _DRINK[1], d[1], _DRINK[2], d[2], _DRINK[3], d[3], f"{d[4]}をのみます",
                     f"喝{d[5]}") for d in DRINKS]
    acts += [Activity(_EAT[0], f[0], _EAT[1], f[1], _EAT[2], f[2], _EAT[3], f[3], f"{f[4]}をたべます", f"吃{f[5]}")
             for f in FOODS]
    acts += [
        Activity(("reads", "read"), "the newspaper", ("liest", "lese", "lesen"), "die Zeitung",
                 ("lee", "leo", "leemos"), "el periódico", ("lit", "lis", "lisons"), "le journal",
                 "しんぶんをよみます", "看报纸"),
        Activity(("reads", "read"), "a book", ("liest", "lese", "lesen"), "ein Buch", ("lee", "leo", "leemos"),
                 "un libro", ("lit", "lis", "lisons"), "un livre", "ほんをよみます", "看书"),
        Activity(("cooks", "cook"), "dinner", ("kocht", "koche", "kochen"), "das Abendessen",
                 ("cocina", "cocino", "cocinamos"), "la cena", ("prépare", "prépare", "préparons"), "le dîner",
                 "ばんごはんをつくります", "做晚饭"),
        Activity(("plays", "play"), "football", ("spielt", "spiele", "spielen"), "Fußball",
                 ("juega", "juego", "jugamos"), "al fútbol", ("joue", "joue", "jouons"), "au football",
                 "サッカーをします", "踢足球"),
        Activity(("plays", "play"), "tennis", ("spielt", "spiele", "spielen"), "Tennis",
                 ("juega", "juego", "jugamos"), "al tenis", ("joue", "joue", "jouons"), "au tennis",
                 "テニスをします", "打网球"),
        Activity(("plays", "play"), "the piano", ("spielt", "spiele", "spielen"), "Klavier",
                 ("toca", "toco", "tocamos"), "el piano", ("joue", "joue", "jouons"), "du piano",
                 "ピアノをひきます", "弹钢琴"),
        Activity(("sings", "sing"), "", ("singt", "singe", "singen"), "", ("canta", "canto", "cantamos"), "",
                 ("chante", "chante", "chantons"), "", "うたをうたいます", "唱歌"),
        Activity(("swims", "swim"), "", ("schwimmt", "schwimme", "schwimmen"), "", ("nada", "nado", "nadamos"),
                 "", ("nage", "nage", "nageons"), "", "およぎます", "游泳"),
        Activity(("works", "work"), "", ("arbeitet", "arbeite", "arbeiten"), "",
                 ("trabaja", "trabajo", "trabajamos"), "", ("travaille", "travaille", "travaillons"), "",
                 "はたらきます", "工作"),
        Activity(("cleans", "clean"), "the house", ("putzt", "putze", "putzen"), "das Haus",
                 ("limpia", "limpio", "limpiamos"), "la casa", ("nettoie", "nettoie", "nettoyons"), "la maison",
                 "いえをそうじします", "打扫房子"),
        Activity(("writes", "write"), "a letter", ("schreibt", "schreibe", "schreiben"), "einen Brief",
                 ("escribe", "escribo", "escribimos"), "una carta", ("écrit", "écris", "écrivons"), "une lettre",
                 "てがみをかきます", "写信"),
    ]
    for lang in LANGUAGE_NAMES:
        acts.append(Activity(("learns", "learn"), lang[0], ("lernt", "lerne", "lernen"), lang[1],
                             ("aprende", "aprendo", "aprendemos"), lang[2], ("apprend", "apprends", "apprenons"),
                             lang[3], f"{lang[4]}をべんきょうします", f"学{lang[5]}"))
        acts.append(Activity(("speaks", "speak"), lang[0], ("spricht", "spreche", "sprechen"), lang[1],
                             ("habla", "hablo", "hablamos"), lang[2], ("parle", "parle", "parlons"),
                             lang[3].split("'")[-1].removeprefix("le "), f"{lang[4]}をはなします", f"说{lang[5]}",
                             timed=False))
    return tuple(acts)


ACTIVITIES: tuple[Activity, ...] = _activities()

#: Time adverbials: en, de, es, fr, ja, zh.
TIMES: tuple[tuple[str, ...], ...] = (
    ("every morning", "jeden Morgen", "todas las mañanas", "tous les matins", "まいあさ", "每天早上"),
    ("every day", "jeden Tag", "todos los días", "tous les jours", "まいにち", "每天"),
    ("every evening", "jeden Abend", "todas las noches", "tous les soirs", "まいばん", "每天晚上"),
    ("on Sundays", "sonntags", "los domingos", "le dimanche", "にちようびに", "每个星期天"),
    ("on Saturdays", "samstags", "los sábados", "le samedi", "どようびに", "每个星期六"),
    ("on Mondays", "montags", "los lunes", "le lundi", "げつようびに", "每个星期一"),
    ("in the afternoon", "nachmittags", "por la tarde", "l'après-midi", "ごごに", "下午"),
    ("in the morning", "morgens", "por la mañana", "le matin", "あさ", "早上"),
    ("in summer", "im Sommer", "en verano", "en été", "なつに", "夏天"),
    ("in winter", "im Winter", "en invierno", "en hiver", "ふゆに", "冬天"),
)


@dataclass(frozen=True)
class Thing:
    """A countable object: en, German noun + gender, Spanish noun + gender, French noun + gender, ja, zh + measure."""

    en: str
    de: str
    de_g: str
    es: str
    es_g: str
    fr: str
    fr_g: str
    ja: str
    zh: str
    zh_clf: str
    pet: bool = False


THINGS: tuple[Thing, ...] = (
    Thing("car", "Auto", "n", "coche", "m", "voiture", "f", "くるま", "车", "辆"),
    Thing("house", "Haus", "n", "casa", "f", "maison", "f", "いえ", "房子", "座"),
    Thing("door", "Tür", "f", "puerta", "f", "porte", "f", "ドア", "门", "扇"),
    Thing("bag", "Tasche", "f", "bolso", "m", "sac", "m", "かばん", "包", "个"),
    Thing("shirt", "Hemd", "n", "camisa", "f", "chemise", "f", "シャツ", "衬衫", "件"),
    Thing("cat", "Katze", "f", "gato", "m", "chat", "m", "ねこ", "猫", "只", pet=True),
    Thing("dog", "Hund", "m", "perro", "m", "chien", "m", "いぬ", "狗", "只", pet=True),
    Thing("umbrella", "Regenschirm", "m", "paraguas", "m", "parapluie", "m", "かさ", "雨伞", "把"),
    Thing("dress", "Kleid", "n", "vestido", "m", "robe", "f", "ドレス", "裙子", "条"),
    Thing("chair", "Stuhl", "m", "silla", "f", "chaise", "f", "いす", "椅子", "把"),
    Thing("table", "Tisch", "m", "mesa", "f", "table", "f", "テーブル", "桌子", "张"),
    Thing("bicycle", "Fahrrad", "n", "bicicleta", "f", "vélo", "m", "じてんしゃ", "自行车", "辆"),
    Thing("hat", "Hut", "m", "sombrero", "m", "chapeau", "m", "ぼうし", "帽子", "顶"),
    Thing("cup", "Tasse", "f", "taza", "f", "tasse", "f", "カップ", "杯子", "个"),
    Thing("book", "Buch", "n", "libro", "m", "livre", "m", "ほん", "书", "本"),
    Thing("bird", "Vogel", "m", "pájaro", "m", "oiseau", "m", "とり", "鸟", "只", pet=True),
    Thing("jacket", "Jacke", "f", "chaqueta", "f", "veste", "f", "ジャケット", "夹克", "件"),
    Thing("boat", "Boot", "n", "barco", "m", "bateau", "m", "ふね", "船", "条"),
    Thing("apple", "Apfel", "m", "manzana", "f", "pomme", "f", "りんご", "苹果", "个"),
)


@dataclass(frozen=True)
class Colour:
    """A colour: en, German stem (declinable unless `de_fixed`), Spanish m/f, French m/f, ja predicate/attribute, zh."""

    en: str
    de: str
    es_m: str
    es_f: str
    fr_m: str
    fr_f: str
    ja_pred: str
    ja_attr: str
    zh: str
    de_fixed: bool = False


COLOURS: tuple[Colour, ...] = (
    Colour("red", "rot", "rojo", "roja", "rouge", "rouge", "あかいです", "あかい", "红色"),
    Colour("blue", "blau", "azul", "azul", "bleu", "bleue", "あおいです", "あおい", "蓝色"),
    Colour("green", "grün", "verde", "verde", "vert", "verte", "みどりいろです", "みどりいろの", "绿色"),
    Colour("yellow", "gelb", "amarillo", "amarilla", "jaune", "jaune", "きいろいです", "きいろい", "黄色"),
    Colour("black", "schwarz", "negro", "negra", "noir", "noire", "くろいです", "くろい", "黑色"),
    Colour("white", "weiß", "blanco", "blanca", "blanc", "blanche", "しろいです", "しろい", "白色"),
    Colour("brown", "braun", "marrón", "marrón", "marron", "marron", "ちゃいろです", "ちゃいろの", "棕色"),
    Colour("grey", "grau", "gris", "gris", "gris", "grise", "はいいろです", "はいいろの", "灰色"),
    Colour("pink", "rosa", "rosa", "rosa", "rose", "rose", "ピンクいろです", "ピンクいろの", "粉红色", de_fixed=True),
    Colour("orange", "orange", "naranja", "naranja", "orange", "orange", "オレンジいろです", "オレンジいろの", "橙色",
           de_fixed=True),
)

#: Plural countable objects: en, de, es, fr, ja, zh, zh measure word.
PLURALS: tuple[tuple[str, ...], ...] = (
    ("apples", "Äpfel", "manzanas", "pommes", "りんご", "苹果", "个"),
    ("oranges", "Orangen", "naranjas", "oranges", "オレンジ", "橙子", "个"),
    ("eggs", "Eier", "huevos", "œufs", "たまご", "鸡蛋", "个"),
    ("bags", "Taschen", "bolsos", "sacs", "かばん", "包", "个"),
    ("cups", "Tassen", "tazas", "tasses", "カップ", "杯子", "个"),
    ("boxes", "Kisten", "cajas", "boîtes", "はこ", "盒子", "个"),
    ("chairs", "Stühle", "sillas", "chaises", "いす", "椅子", "把"),
    ("tables", "Tische", "mesas", "tables", "テーブル", "桌子", "张"),
)

#: Numbers 2-9: en, de, es, fr, ja (native counter -tsu), zh (before a measure word).
COUNTS: tuple[tuple[str, ...], ...] = (
    ("two", "zwei", "dos", "deux", "ふたつ", "两"),
    ("three", "drei", "tres", "trois", "みっつ", "三"),
    ("four", "vier", "cuatro", "quatre", "よっつ", "四"),
    ("five", "fünf", "cinco", "cinq", "いつつ", "五"),
    ("six", "sechs", "seis", "six", "むっつ", "六"),
    ("seven", "sieben", "siete", "sept", "ななつ", "七"),
    ("eight", "acht", "ocho", "huit", "やっつ", "八"),
    ("nine", "neun", "nueve", "neuf", "ここのつ", "九"),
)

#: Clock hours 2-11: en, de, es, fr, ja, zh.
HOURS: tuple[tuple[str, ...], ...] = (
    ("two", "zwei", "dos", "deux", "にじ", "两"),
    ("three", "drei", "tres", "trois", "さんじ", "三"),
    ("four", "vier", "cuatro", "quatre", "よじ", "四"),
    ("five", "fünf", "cinco", "cinq", "ごじ", "五"),
    ("six", "sechs", "seis", "six", "ろくじ", "六"),
    ("seven", "sieben", "siete", "sept", "しちじ", "七"),
    ("eight", "acht", "ocho", "huit", "はちじ", "八"),
    ("nine", "neun", "nueve", "neuf", "くじ", "九"),
    ("ten", "zehn", "diez", "dix", "じゅうじ", "十"),
    ("eleven", "elf", "once", "onze", "じゅういちじ", "十一"),
)

#: Ages: en, de, es, fr, ja, zh, age group.
AGES: tuple[tuple[str, ...], ...] = (
    ("two", "zwei", "dos", "deux", "にさい", "两", "child"),
    ("three", "drei", "tres", "trois", "さんさい", "三", "child"),
    ("four", "vier", "cuatro", "quatre", "よんさい", "四", "child"),
    ("five", "fünf", "cinco", "cinq", "ごさい", "五", "child"),
    ("six", "sechs", "seis", "six", "ろくさい", "六", "child"),
    ("seven", "sieben", "siete", "sept", "ななさい", "七", "child"),
    ("eight", "acht", "ocho", "huit", "はっさい", "八", "child"),
    ("nine", "neun", "nueve", "neuf", "きゅうさい", "九", "child"),
    ("ten", "zehn", "diez", "dix", "じゅっさい", "十", "child"),
    ("thirty", "dreißig", "treinta", "trente", "さんじゅっさい", "三十", "adult"),
    ("forty", "vierzig", "cuarenta", "quarante", "よんじゅっさい", "四十", "adult"),
    ("fifty", "fünfzig", "cincuenta", "cinquante", "ごじゅっさい", "五十", "adult"),
    ("sixty", "sechzig", "sesenta", "soixante", "ろくじゅっさい", "六十", "old"),
    ("seventy", "siebzig", "setenta", "soixante-dix", "ななじゅっさい", "七十", "old"),
    ("eighty", "achtzig", "ochenta", "quatre-vingts", "はちじゅっさい", "八十", "old"),
)

#: Vehicles: en, German noun + gender, Spanish noun (all masculine), French noun (all masculine), ja, zh,
#: German verb of departure.
VEHICLES: tuple[tuple[str, ...], ...] = (
    ("train", "Zug", "m", "tren", "train", "でんしゃ", "火车", "fährt"),
    ("bus", "Bus", "m", "autobús", "bus", "バス", "公交车", "fährt"),
    ("boat", "Boot", "n", "barco", "bateau", "ふね", "船", "fährt"),
    ("plane", "Flugzeug", "n", "avión", "avion", "ひこうき", "飞机", "fliegt"),
)

#: Vehicle modifiers: en, de (after the definite article), es, fr, ja, zh (replaces nothing; zh adds a measure).
VEHICLE_MODS: tuple[tuple[str, ...], ...] = (
    ("", "", "", "", "", ""),
    ("next ", "nächste ", "próximo ", "prochain ", "つぎの", "下一班"),
    ("last ", "letzte ", "último ", "dernier ", "さいごの", "最后一班"),
)


@dataclass(frozen=True)
class Place:
    """A place: en, German nominative/dative with article, Spanish nominative/`de` form, French nominative/`de`
    form, ja, zh, and German/Spanish/French indefinite forms for `works in a ...` ("" = not a workplace)."""

    en: str
    de: str
    de_dat: str
    es: str
    es_de: str
    fr: str
    fr_de: str
    ja: str
    zh: str
    de_in: str = ""
    es_in: str = ""
    fr_in: str = ""
    opens: bool = False


PLACES: tuple[Place, ...] = (
    Place("train station", "der Bahnhof", "dem Bahnhof", "la estación de tren", "de la estación de tren", "la gare",
          "de la gare", "えき", "火车站"),
    Place("bank", "die Bank", "der Bank", "el banco", "del banco", "la banque", "de la banque", "ぎんこう", "银行",
          "in einer Bank", "en un banco", "dans une banque", opens=True),
    Place("hotel", "das Hotel", "dem Hotel", "el hotel", "del hotel", "l'hôtel", "de l'hôtel", "ホテル", "酒店",
          "in einem Hotel", "en un hotel", "dans un hôtel"),
    Place("post office", "die Post", "der Post", "la oficina de correos", "de la oficina de correos", "la poste",
          "de la poste", "ゆうびんきょく", "邮局", opens=True),
    Place("market", "der Markt", "dem Markt", "el mercado", "del mercado", "le marché", "du marché", "いちば", "市场",
          opens=True),
    Place("museum", "das Museum", "dem Museum", "el museo", "del museo", "le musée", "du musée", "はくぶつかん",
          "博物馆", "in einem Museum", "en un museo", "dans un musée", opens=True),
    Place("school", "die Schule", "der Schule", "la escuela", "de la escuela", "l'école", "de l'école", "がっこう",
          "学校", "in einer Schule", "en una escuela", "dans une école"),
    Place("library", "die Bibliothek", "der Bibliothek", "la biblioteca", "de la biblioteca", "la bibliothèque",
          "de la bibliothèque", "としょかん", "图书馆", "in einer Bibliothek", "en una biblioteca",
          "dans une bibliothèque", opens=True),
    Place("hospital", "das Krankenhaus", "dem Krankenhaus", "el hospital", "del hospital", "l'hôpital",
          "de l'hôpital", "びょういん", "医院", "in einem Krankenhaus", "en un hospital", "dans un hôpital"),
    Place("airport", "der Flughafen", "dem Flughafen", "el aeropuerto", "del aeropuerto", "l'aéroport",
          "de l'aéroport", "くうこう", "机场"),
    Place("park", "der Park", "dem Park", "el parque", "del parque", "le parc", "du parc", "こうえん", "公园"),
    Place("restaurant", "das Restaurant", "dem Restaurant", "el restaurante", "del restaurante", "le restaurant",
          "du restaurant", "レストラン", "餐厅", "in einem Restaurant", "en un restaurante", "dans un restaurant",
          opens=True),
    Place("pharmacy", "die Apotheke", "der Apotheke", "la farmacia", "de la farmacia", "la pharmacie",
          "de la pharmacie", "くすりや", "药店", "in einer Apotheke", "en una farmacia", "dans une pharmacie",
          opens=True),
    Place("supermarket", "der Supermarkt", "dem Supermarkt", "el supermercado", "del supermercado",
          "le supermarché", "du supermarché", "スーパー", "超市", "in einem Supermarkt", "en un supermercado",
          "dans un supermarché", opens=True),
    Place("shop", "der Laden", "dem Laden", "la tienda", "de la tienda", "le magasin", "du magasin", "みせ", "商店",
          "in einem Laden", "en una tienda", "dans un magasin", opens=True),
    Place("bus stop", "die Bushaltestelle", "der Bushaltestelle", "la parada de autobús",
          "de la parada de autobús", "l'arrêt de bus", "de l'arrêt de bus", "バスてい", "公交车站"),
)

#: Events: en, German noun with article, Spanish, French, ja, zh.
EVENTS: tuple[tuple[str, ...], ...] = (
    ("meeting", "die Besprechung", "la reunión", "la réunion", "かいぎ", "会议"),
    ("film", "der Film", "la película", "le film", "えいが", "电影"),
    ("lesson", "der Unterricht", "la clase", "le cours", "じゅぎょう", "课"),
    ("concert", "das Konzert", "el concierto", "le concert", "コンサート", "音乐会"),
    ("party", "die Party", "la fiesta", "la fête", "パーティー", "派对"),
    ("match", "das Spiel", "el partido", "le match", "しあい", "比赛"),
)

#: Cities and countries: en, de (in), de (nach), es, fr (with preposition), ja, zh.
DESTINATIONS: tuple[tuple[str, ...], ...] = (
    ("Paris", "in Paris", "nach Paris", "París", "à Paris", "パリ", "巴黎"),
    ("Berlin", "in Berlin", "nach Berlin", "Berlín", "à Berlin", "ベルリン", "柏林"),
    ("Tokyo", "in Tokio", "nach Tokio", "Tokio", "à Tokyo", "とうきょう", "东京"),
    ("Madrid", "in Madrid", "nach Madrid", "Madrid", "à Madrid", "マドリード", "马德里"),
    ("Beijing", "in Peking", "nach Peking", "Pekín", "à Pékin", "ペキン", "北京"),
    ("London", "in London", "nach London", "Londres", "à Londres", "ロンドン", "伦敦"),
    ("Rome", "in Rom", "nach Rom", "Roma", "à Rome", "ローマ", "罗马"),
    ("Spain", "in Spanien", "nach Spanien", "España", "en Espagne", "スペイン", "西班牙"),
    ("Japan", "in Japan", "nach Japan", "Japón", "au Japon", "にほん", "日本"),
    ("China", "in China", "nach China", "China", "en Chine", "ちゅうごく", "中国"),
    ("France", "in Frankreich", "nach Frankreich", "Francia", "en France", "フランス", "法国"),
    ("Germany", "in Deutschland", "nach Deutschland", "Alemania", "en Allemagne", "ドイツ", "德国"),
    ("Italy", "in Italien", "nach Italien", "Italia", "en Italie", "イタリア", "意大利"),
)

#: Months: en, de, es, fr, ja, zh.
MONTHS: tuple[tuple[str, ...], ...] = (
    ("January", "Januar", "enero", "janvier", "いちがつ", "一月"),
    ("February", "Februar", "febrero", "février", "にがつ", "二月"),
    ("March", "März", "marzo", "mars", "さんがつ", "三月"),
    ("April", "April", "abril", "avril", "しがつ", "四月"),
    ("May", "Mai", "mayo", "mai", "ごがつ", "五月"),
    ("June", "Juni", "junio", "juin", "ろくがつ", "六月"),
    ("July", "Juli", "julio", "juillet", "しちがつ", "七月"),
    ("August", "August", "agosto", "août", "はちがつ", "八月"),
    ("September", "September", "septiembre", "septembre", "くがつ", "九月"),
    ("October", "Oktober", "octubre", "octobre", "じゅうがつ", "十月"),
    ("November", "November", "noviembre", "novembre", "じゅういちがつ", "十一月"),
    ("December", "Dezember", "diciembre", "décembre", "じゅうにがつ", "十二月"),
)

#: Foods and drinks in the `is <adjective>` pattern: en, German with article + gender, Spanish with article +
#: gender, French with article + gender, ja, zh, drink flag.
DISHES: tuple[tuple[str, ...], ...] = (
    ("soup", "die Suppe", "f", "la sopa", "f", "la soupe", "f", "スープ", "汤", "d"),
    ("coffee", "der Kaffee", "m", "el café", "m", "le café", "m", "コーヒー", "咖啡", "d"),
    ("tea", "der Tee", "m", "el té", "m", "le thé", "m", "おちゃ", "茶", "d"),
    ("milk", "die Milch", "f", "la leche", "f", "le lait", "m", "ぎゅうにゅう", "牛奶", "d"),
    ("bread", "das Brot", "n", "el pan", "m", "le pain", "m", "パン", "面包", ""),
    ("fish", "der Fisch", "m", "el pescado", "m", "le poisson", "m", "さかな", "鱼", ""),
    ("cake", "der Kuchen", "m", "el pastel", "m", "le gâteau", "m", "ケーキ", "蛋糕", ""),
    ("cheese", "der Käse", "m", "el queso", "m", "le fromage", "m", "チーズ", "奶酪", ""),
    ("pizza", "die Pizza", "f", "la pizza", "f", "la pizza", "f", "ピザ", "比萨饼", ""),
    ("rice", "der Reis", "m", "el arroz", "m", "le riz", "m", "ごはん", "米饭", ""),
)

#: Adjectives for dishes: en, de, es m, es f, Spanish copula, fr m, fr f, ja, zh, zh for drinks.
DISH_ADJECTIVES: tuple[tuple[str, ...], ...] = (
    ("hot", "heiß", "caliente", "caliente", "está", "chaud", "chaude", "あついです", "很热", "很热"),
    ("cold", "kalt", "frío", "fría", "está", "froid", "froide", "つめたいです", "很凉", "很凉"),
    ("fresh", "frisch", "fresco", "fresca", "está", "frais", "fraîche", "しんせんです", "很新鲜", "很新鲜"),
    ("delicious", "lecker", "delicioso", "deliciosa", "está", "délicieux", "délicieuse", "おいしいです", "很好吃",
     "很好喝"),
    ("expensive", "teuer", "caro", "cara", "es", "cher", "chère", "たかいです", "很贵", "很贵"),
)

#: Weather: en, de (after the fronted time), es, fr, ja, zh.
WEATHER: tuple[tuple[str, ...], ...] = (
    ("it is raining", "regnet es", "llueve", "il pleut", "あめがふっています", "下雨"),
    ("it is snowing", "schneit es", "nieva", "il neige", "ゆきがふっています", "下雪"),
    ("it is cold", "ist es kalt", "hace frío", "il fait froid", "さむいです", "很冷"),
    ("it is very cold", "ist es sehr kalt", "hace mucho frío", "il fait très froid", "とてもさむいです", "非常冷"),
    ("it is hot", "ist es heiß", "hace calor", "il fait chaud", "あついです", "很热"),
    ("it is windy", "ist es windig", "hace viento", "il y a du vent", "かぜがつよいです", "风很大"),
    ("the weather is nice", "ist das Wetter schön", "hace buen tiempo", "il fait beau", "いいてんきです", "天气很好"),
    ("it is foggy", "ist es neblig", "hay niebla", "il y a du brouillard", "きりがでています", "有雾"),
)

#: Weather times: en, de (fronted), es (fronted), fr (after), ja (topic), zh.
WEATHER_TIMES: tuple[tuple[str, ...], ...] = (
    ("today", "heute", "hoy", "aujourd'hui", "きょう", "今天"),
    ("this morning", "heute Morgen", "esta mañana", "ce matin", "けさ", "今天早上"),
    ("this afternoon", "heute Nachmittag", "esta tarde", "cet après-midi", "ごご", "今天下午"),
    ("tonight", "heute Abend", "esta noche", "ce soir", "こんや", "今天晚上"),
)

#: Rooms: en, de (fronted, capitalised), es, fr, ja, zh.
ROOMS: tuple[tuple[str, ...], ...] = (
    ("in the kitchen", "In der Küche", "en la cocina", "dans la cuisine", "だいどころ", "厨房里"),
    ("in the garden", "Im Garten", "en el jardín", "dans le jardin", "にわ", "花园里"),
    ("in the living room", "Im Wohnzimmer", "en el salón", "dans le salon", "いま", "客厅里"),
    ("in the bedroom", "Im Schlafzimmer", "en el dormitorio", "dans la chambre", "しんしつ", "卧室里"),
)


# ---------------------------------------------------------------------------------------------- rendering helpers

_FR_VOWEL = re.compile(r"\bje ([aeiouyhéèêàâ])", re.IGNORECASE)
_FR_DE_ARTICLE = {"le ": "du ", "la ": "de la ", "l'": "de l'"}


def _cap(text: str) -> str:
    """Upper-case the first letter (Latin-script sentences start with a capital)."""
    return text[:1].upper() + text[1:]


def _fr(text: str) -> str:
    """French sentence finishing: `je` elides before a vowel, first letter capitalised."""
    return _cap(_FR_VOWEL.sub(r"j'\1", text))


def _join(*parts: str) -> str:
    """Join non-empty parts with single spaces."""
    return " ".join(p for p in parts if p)


def _de_article(gender: str, kind: str) -> str:
    """German nominative determiner (`the`, `my`, `our`, `this`) for a noun's gender."""
    table = {
        "the": {"m": "der", "f": "die", "n": "das"},
        "my": {"m": "mein", "f": "meine", "n": "mein"},
        "our": {"m": "unser", "f": "unsere", "n": "unser"},
        "this": {"m": "dieser", "f": "diese", "n": "dieses"},
    }
    return table[kind][gender]


def _de_indefinite_adjective(gender: str, stem: str) -> str:
    """German accusative `a <adjective>`: einen roten / eine rote / ein rotes."""
    return {"m": f"einen {stem}en", "f": f"eine {stem}e", "n": f"ein {stem}es"}[gender]


def _es_article(gender: str, kind: str) -> str:
    table = {"the": {"m": "el", "f": "la"}, "my": {"m": "mi", "f": "mi"}, "our": {"m": "nuestro", "f": "nuestra"},
             "this": {"m": "este", "f": "esta"}}
    return table[kind][gender]


def _fr_vowel_start(noun: str) -> bool:
    return noun[:1].lower() in "aeiouyhéèêàâ"


def _fr_determined(noun: str, gender: str, kind: str) -> str:
    """French determiner + noun, with elision (l'oiseau) and mon/cet before a vowel."""
    vowel = _fr_vowel_start(noun)
    if kind == "the":
        return f"l'{noun}" if vowel else f"{'le' if gender == 'm' else 'la'} {noun}"
    if kind == "my":
        return f"{'mon' if gender == 'm' or vowel else 'ma'} {noun}"
    if kind == "our":
        return f"notre {noun}"
    if kind == "this":
        return f"{'cet' if gender == 'm' and vowel else 'ce' if gender == 'm' else 'cette'} {noun}"
    raise CorpusError(f"unknown French determiner kind {kind!r}")


def _ja_topic(ja: str) -> str:
    return f"{ja}{{wa}}"


_JA_DETERMINER = {"the": "", "my": "わたしの", "our": "わたしたちの", "this": "この"}
_ZH_DETERMINER = {"the": "", "my": "我的", "our": "我们的"}
_EN_DETERMINER = {"the": "the", "my": "my", "our": "our", "this": "this"}


# --------------------------------------------------------------------------------------------------- the patterns


def _activity(s: Subject, a: Activity, t: tuple[str, ...] | None) -> Texts:
    en_t, de_t, es_t, fr_t, ja_t, zh_t = t if t else ("",) * 6
    return {
        "eng": _cap(_join(s.en, _en_verb(a.en, s), a.en_obj, en_t)) + ".",
        "deu": _cap(_join(s.de, _form(a.de, s), de_t, a.de_obj)) + ".",
        "spa": _cap(_join(s.es, _form(a.es, s), a.es_obj, es_t)) + ".",
        "fra": _fr(_join(s.fr, _form(a.fr, s), a.fr_obj, fr_t)) + ".",
        "jpn": f"{_ja_topic(s.ja)}{ja_t}{a.ja}。",
        "cmn": f"{s.zh}{zh_t}{a.zh}。",
    }


def _likes(s: Subject, item: tuple[str, ...], plural: bool) -> Texts:
    en, de, _, _, ja, zh, es_def, fr_def = item[:8]
    return {
        "eng": _cap(_join(s.en, _en_verb(("likes", "like"), s), en)) + ".",
        "deu": _cap(_join(s.de, _form(("mag", "mag", "mögen"), s), de)) + ".",
        "spa": _cap(_join(s.es_dat, "gustan" if plural else "gusta", es_def)) + ".",
        "fra": _fr(_join(s.fr, _form(("aime", "aime", "aimons"), s), fr_def)) + ".",
        "jpn": f"{_ja_topic(s.ja)}{ja}がすきです。",
        "cmn": f"{s.zh}喜欢{zh}。",
    }


def _colour_of(kind: str, t: Thing, c: Colour) -> Texts:
    es_c = c.es_m if t.es_g == "m" else c.es_f
    fr_c = c.fr_m if t.fr_g == "m" else c.fr_f
    return {
        "eng": _cap(f"{_EN_DETERMINER[kind]} {t.en} is {c.en}."),
        "deu": _cap(f"{_de_article(t.de_g, kind)} {t.de} ist {c.de}."),
        "spa": _cap(f"{_es_article(t.es_g, kind)} {t.es} es {es_c}."),
        "fra": _cap(f"{_fr_determined(t.fr, t.fr_g, kind)} est {fr_c}."),
        "jpn": f"{_JA_DETERMINER[kind]}{_ja_topic(t.ja)}{c.ja_pred}。",
        "cmn": f"{_ZH_DETERMINER[kind]}{t.zh}是{c.zh}的。",
    }


def _has_coloured(s: Subject, t: Thing, c: Colour) -> Texts:
    es_c = c.es_m if t.es_g == "m" else c.es_f
    fr_c = c.fr_m if t.fr_g == "m" else c.fr_f
    ja_verb = "かっています" if t.pet else "もっています"
    return {
        "eng": _cap(_join(s.en, _en_verb(("has", "have"), s), "a", c.en, t.en)) + ".",
        "deu": _cap(_join(s.de, _form(("hat", "habe", "haben"), s), _de_indefinite_adjective(t.de_g, c.de), t.de))
        + ".",
        "spa": _cap(_join(s.es, _form(("tiene", "tengo", "tenemos"), s), "un" if t.es_g == "m" else "una", t.es,
                          es_c)) + ".",
        "fra": _fr(_join(s.fr, _form(("a", "ai", "avons"), s), "un" if t.fr_g == "m" else "une", t.fr, fr_c)) + ".",
        "jpn": f"{_ja_topic(s.ja)}{c.ja_attr}{t.ja}を{ja_verb}。",
        "cmn": f"{s.zh}有一{t.zh_clf}{c.zh}的{t.zh}。",
    }


def _counting(s: Subject, verb: str, p: tuple[str, ...], n: tuple[str, ...]) -> Texts:
    have = verb == "have"
    return {
        "eng": _cap(_join(s.en, _en_verb(("has", "have") if have else ("buys", "buy"), s), n[0], p[0])) + ".",
        "deu": _cap(_join(s.de, _form(("hat", "habe", "haben") if have else ("kauft", "kaufe", "kaufen"), s), n[1],
                          p[1])) + ".",
        "spa": _cap(_join(s.es, _form(("tiene", "tengo", "tenemos") if have else ("compra", "compro", "compramos"),
                                      s), n[2], p[2])) + ".",
        "fra": _fr(_join(s.fr, _form(("a", "ai", "avons") if have else ("achète", "achète", "achetons"), s), n[3],
                         p[3])) + ".",
        "jpn": f"{_ja_topic(s.ja)}{p[4]}を{n[4]}{'もっています' if have else 'かいます'}。",
        "cmn": f"{s.zh}{'有' if have else '买'}{n[5]}{p[6]}{p[5]}。",
    }


def _age(s: Subject, a: tuple[str, ...]) -> Texts:
    return {
        "eng": _cap(f"{s.en} is {a[0]} years old."),
        "deu": _cap(f"{s.de} ist {a[1]} Jahre alt."),
        "spa": _cap(f"{s.es} tiene {a[2]} años."),
        "fra": _cap(f"{s.fr} a {a[3]} ans."),
        "jpn": f"{_ja_topic(s.ja)}{a[4]}です。",
        "cmn": f"{s.zh}{a[5]}岁。",
    }


def _vehicle(v: tuple[str, ...], mod: tuple[str, ...], leaves: bool, h: tuple[str, ...]) -> Texts:
    en, de, de_g, es, fr, ja, zh, de_leave = v
    de_verb = f"{de_leave} um {h[1]} ab" if leaves else f"kommt um {h[1]} an"
    fr_np = f"le {mod[3]}{fr}" if mod[3] or not _fr_vowel_start(fr) else f"l'{fr}"
    return {
        "eng": _cap(f"the {mod[0]}{en} {'leaves' if leaves else 'arrives'} at {h[0]}."),
        "deu": _cap(f"{_de_article(de_g, 'the')} {mod[1]}{de} {de_verb}."),
        "spa": _cap(f"el {mod[2]}{es} {'sale' if leaves else 'llega'} a las {h[2]}."),
        "fra": _cap(f"{fr_np} {'part' if leaves else 'arrive'} à {h[3]} heures."),
        "jpn": f"{mod[4]}{_ja_topic(ja)}{h[4]}に{'でます' if leaves else 'つきます'}。",
        "cmn": f"{mod[5]}{zh}{h[5]}点{'出发' if leaves else '到'}。",
    }


def _opening(p: Place, opens: bool, h: tuple[str, ...]) -> Texts:
    return {
        "eng": _cap(f"the {p.en} {'opens' if opens else 'closes'} at {h[0]}."),
        "deu": _cap(f"{p.de} {'öffnet' if opens else 'schließt'} um {h[1]}."),
        "spa": _cap(f"{p.es} {'abre' if opens else 'cierra'} a las {h[2]}."),
        "fra": _cap(f"{p.fr} {'ouvre' if opens else 'ferme'} à {h[3]} heures."),
        "jpn": f"{_ja_topic(p.ja)}{h[4]}に{'あきます' if opens else 'しまります'}。",
        "cmn": f"{p.zh}{h[5]}点{'开门' if opens else '关门'}。",
    }


def _event(e: tuple[str, ...], starts: bool, h: tuple[str, ...]) -> Texts:
    return {
        "eng": _cap(f"the {e[0]} {'starts' if starts else 'ends'} at {h[0]}."),
        "deu": _cap(f"{e[1]} {'beginnt' if starts else 'endet'} um {h[1]}."),
        "spa": _cap(f"{e[2]} {'empieza' if starts else 'termina'} a las {h[2]}."),
        "fra": _cap(f"{e[3]} {'commence' if starts else 'finit'} à {h[3]} heures."),
        "jpn": f"{_ja_topic(e[4])}{h[4]}に{'はじまります' if starts else 'おわります'}。",
        "cmn": f"{e[5]}{h[5]}点{'开始' if starts else '结束'}。",
    }


def _where(p: Place) -> Texts:
    return {
        "eng": f"Where is the {p.en}?",
        "deu": f"Wo ist {p.de}?",
        "spa": f"¿Dónde está {p.es}?",
        "fra": f"Où est {p.fr} ?",
        "jpn": f"{_ja_topic(p.ja)}どこですか。",
        "cmn": f"{p.zh}在哪里？",
    }


def _distance(p: Place, far: bool) -> Texts:
    return {
        "eng": _cap(f"the {p.en} is {'far from' if far else 'near'} here."),
        "deu": _cap(f"{p.de} ist {'weit von hier' if far else 'in der Nähe'}."),
        "spa": _cap(f"{p.es} está {'lejos' if far else 'cerca'} de aquí."),
        "fra": _cap(f"{p.fr} est {'loin' if far else 'près'} d'ici."),
        "jpn": f"{_ja_topic(p.ja)}{'ここからとおいです' if far else 'このちかくにあります'}。",
        "cmn": f"{p.zh}离这里很{'远' if far else '近'}。",
    }


#: Relations: en, de preposition (+ dative), es (+ `de` form), fr (preposition, uses `de` form if it ends in "de"),
#: ja, zh.
RELATIONS: tuple[tuple[str, ...], ...] = (
    ("next to", "neben", "al lado", "à côté de", "となり", "旁边"),
    ("behind", "hinter", "detrás", "derrière", "うしろ", "后面"),
    ("in front of", "vor", "delante", "devant", "まえ", "前面"),
)


def _relation(a: Place, r: tuple[str, ...], b: Place) -> Texts:
    fr_other = f"à côté {b.fr_de}" if r[3] == "à côté de" else f"{r[3]} {b.fr}"
    return {
        "eng": _cap(f"the {a.en} is {r[0]} the {b.en}."),
        "deu": _cap(f"{a.de} ist {r[1]} {b.de_dat}."),
        "spa": _cap(f"{a.es} está {r[2]} {b.es_de}."),
        "fra": _cap(f"{a.fr} est {fr_other}."),
        "jpn": f"{_ja_topic(a.ja)}{b.ja}の{r[4]}にあります。",
        "cmn": f"{a.zh}在{b.zh}{r[5]}。",
    }


def _lives(s: Subject, d: tuple[str, ...]) -> Texts:
    return {
        "eng": _cap(_join(s.en, _en_verb(("lives", "live"), s), "in", d[0])) + ".",
        "deu": _cap(_join(s.de, _form(("wohnt", "wohne", "wohnen"), s), d[1])) + ".",
        "spa": _cap(_join(s.es, _form(("vive", "vivo", "vivimos"), s), "en", d[3])) + ".",
        "fra": _fr(_join(s.fr, _form(("habite", "habite", "habitons"), s), d[4])) + ".",
        "jpn": f"{_ja_topic(s.ja)}{d[5]}にすんでいます。",
        "cmn": f"{s.zh}住在{d[6]}。",
    }


def _travels(s: Subject, d: tuple[str, ...], m: tuple[str, ...]) -> Texts:
    return {
        "eng": _cap(_join(s.en, _en_verb(("travels", "travel"), s), "to", d[0], "in", m[0])) + ".",
        "deu": _cap(_join(s.de, _form(("reist", "reise", "reisen"), s), "im", m[1], d[2])) + ".",
        "spa": _cap(_join(s.es, _form(("viaja", "viajo", "viajamos"), s), "a", d[3], "en", m[2])) + ".",
        "fra": _fr(_join(s.fr, _form(("voyage", "voyage", "voyageons"), s), d[4], "en", m[3])) + ".",
        "jpn": f"{_ja_topic(s.ja)}{m[4]}に{d[5]}{{e}}りょこうします。",
        "cmn": f"{s.zh}{m[5]}去{d[6]}旅行。",
    }


def _works(s: Subject, p: Place) -> Texts:
    return {
        "eng": _cap(_join(s.en, _en_verb(("works", "work"), s), "in a", p.en)) + ".",
        "deu": _cap(_join(s.de, _form(("arbeitet", "arbeite", "arbeiten"), s), p.de_in)) + ".",
        "spa": _cap(_join(s.es, _form(("trabaja", "trabajo", "trabajamos"), s), p.es_in)) + ".",
        "fra": _fr(_join(s.fr, _form(("travaille", "travaille", "travaillons"), s), p.fr_in)) + ".",
        "jpn": f"{_ja_topic(s.ja)}{p.ja}ではたらいています。",
        "cmn": f"{s.zh}在{p.zh}工作。",
    }


def _dish(d: tuple[str, ...], a: tuple[str, ...]) -> Texts:
    en, de, de_g, es, es_g, fr, fr_g, ja, zh, drink = d
    return {
        "eng": f"The {en} is {a[0]}.",
        "deu": _cap(f"{de} ist {a[1]}."),
        "spa": _cap(f"{es} {a[4]} {a[2] if es_g == 'm' else a[3]}."),
        "fra": _cap(f"{fr} est {a[5] if fr_g == 'm' else a[6]}."),
        "jpn": f"{_ja_topic(ja)}{a[7]}。",
        "cmn": f"{zh}{a[9] if drink else a[8]}。",
    }


def _weather(w: tuple[str, ...], t: tuple[str, ...]) -> Texts:
    return {
        "eng": _cap(f"{w[0]} {t[0]}."),
        "deu": _cap(f"{t[1]} {w[1]}."),
        "spa": _cap(f"{t[2]} {w[2]}."),
        "fra": _cap(f"{w[3]} {t[3]}."),
        "jpn": f"{_ja_topic(t[4])}{w[4]}。",
        "cmn": f"{t[5]}{w[5]}。",
    }


def _there_are(room: tuple[str, ...], p: tuple[str, ...], n: tuple[str, ...]) -> Texts:
    return {
        "eng": f"There are {n[0]} {p[0]} {room[0]}.",
        "deu": f"{room[1]} gibt es {n[1]} {p[1]}.",
        "spa": f"Hay {n[2]} {p[2]} {room[2]}.",
        "fra": f"Il y a {n[3]} {p[3]} {room[3]}.",
        "jpn": f"{room[4]}に{p[4]}が{n[4]}あります。",
        "cmn": f"{room[5]}有{n[5]}{p[6]}{p[5]}。",
    }


def _price(t: Thing) -> Texts:
    return {
        "eng": f"How much is this {t.en}?",
        "deu": f"Wie viel kostet {_de_article(t.de_g, 'this')} {t.de}?",
        "spa": f"¿Cuánto cuesta {_es_article(t.es_g, 'this')} {t.es}?",
        "fra": f"Combien coûte {_fr_determined(t.fr, t.fr_g, 'this')} ?",
        "jpn": f"この{_ja_topic(t.ja)}いくらですか。",
        "cmn": f"这{t.zh_clf}{t.zh}多少钱？",
    }


# ------------------------------------------------------------------------------------------------ enumeration


def _with_time(s: Subject, a: Activity) -> Iterator[Texts]:
    yield _activity(s, a, None)
    if a.timed:
        for t in TIMES:
            yield _activity(s, a, t)


#: Pattern name -> (enumerator of every sentence of the pattern, share of the generated corpus).
PATTERNS: dict[str, tuple[Callable[[], Iterator[Texts]], float]] = {
    "activity": (lambda: (x for s in SUBJECTS for a in ACTIVITIES for x in _with_time(s, a)), 0.26),
    "likes": (lambda: (_likes(s, item, plural) for s in SUBJECTS
                       for item, plural in [(d, False) for d in DRINKS] + [(f, f[8] == "p") for f in FOODS]), 0.07),
    "colour": (lambda: (_colour_of(k, t, c) for k in ("the", "my", "our") for t in THINGS for c in COLOURS), 0.08),
    "has_coloured": (lambda: (_has_coloured(s, t, c) for s in SUBJECTS for t in THINGS for c in COLOURS
                              if not c.de_fixed), 0.09),
    "counting": (lambda: (_counting(s, v, p, n) for s in SUBJECTS for v in ("have", "buy") for p in PLURALS[:6]
                          for n in COUNTS), 0.07),
    "age": (lambda: (_age(s, a) for s in SUBJECTS for a in AGES if s.age and s.age == a[6]), 0.03),
    "vehicle": (lambda: (_vehicle(v, m, leaves, h) for v in VEHICLES for m in VEHICLE_MODS for leaves in (True, False)
                         for h in HOURS), 0.05),
    "opening": (lambda: (_opening(p, o, h) for p in PLACES if p.opens for o in (True, False) for h in HOURS), 0.04),
    "event": (lambda: (_event(e, st, h) for e in EVENTS for st in (True, False) for h in HOURS), 0.03),
    "where": (lambda: (_where(p) for p in PLACES), 0.006),
    "distance": (lambda: (_distance(p, far) for p in PLACES for far in (True, False)), 0.012),
    "relation": (lambda: (_relation(a, r, b) for a in PLACES for r in RELATIONS for b in PLACES if a != b), 0.06),
    "lives": (lambda: (_lives(s, d) for s in SUBJECTS for d in DESTINATIONS), 0.04),
    "travels": (lambda: (_travels(s, d, m) for s in SUBJECTS for d in DESTINATIONS for m in MONTHS), 0.06),
    "works": (lambda: (_works(s, p) for s in SUBJECTS for p in PLACES if p.de_in), 0.03),
    "dish": (lambda: (_dish(d, a) for d in DISHES for a in DISH_ADJECTIVES), 0.02),
    "weather": (lambda: (_weather(w, t) for w in WEATHER for t in WEATHER_TIMES), 0.012),
    "there_are": (lambda: (_there_are(r, p, n) for r in ROOMS for p in PLURALS for n in COUNTS), 0.04),
    "price": (lambda: (_price(t) for t in THINGS), 0.007),
}


def _render(marked: str, table: dict[str, str]) -> str:
    for mark, kana in table.items():
        marked = marked.replace(mark, kana)
    return marked


def _sentence(sid: str, marked: Texts) -> Sentence:
    texts = {lang: _render(marked[lang], _WRITTEN) for lang in CORPUS_LANGUAGES}
    spoken = {lang: _render(marked[lang], _SPOKEN) for lang in CORPUS_LANGUAGES}
    return Sentence(sid, MappingProxyType(texts), MappingProxyType(spoken))


def pattern_size(name: str) -> int:
    """How many distinct sentences a pattern can produce."""
    if name not in PATTERNS:
        raise CorpusError(f"unknown grammar pattern {name!r}; known: {', '.join(PATTERNS)}")
    return sum(1 for _ in PATTERNS[name][0]())


def generate_sentences(n: int, seed: int = 0, exclude: tuple[Sentence, ...] = SENTENCES) -> list[Sentence]:
    """`n` distinct grammar sentences (ids `g00000`...), drawn per pattern by its share, seeded.

    A sentence whose text in any language equals a text of a sentence in `exclude` (by default the built-in corpus)
    is skipped, and so is one whose text in some language already belongs to another generated sentence, so every
    text has exactly one translation in each language.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise CorpusError(f"the number of grammar sentences must be a positive integer, got {n!r}")
    rng = random.Random(seed)
    pools: dict[str, list[Texts]] = {}
    for name, (enumerate_pattern, _) in PATTERNS.items():
        pool = list(enumerate_pattern())
        rng.shuffle(pool)
        pools[name] = pool
    capacity = sum(len(p) for p in pools.values())
    if n > capacity:
        raise CorpusError(f"the grammar can produce at most {capacity} sentences, {n} requested")
    total_share = sum(share for _, share in PATTERNS.values())
    taken: dict[str, set[str]] = {lang: {s.text(lang) for s in exclude} for lang in CORPUS_LANGUAGES}
    chosen: list[Texts] = []
    cursor = dict.fromkeys(pools, 0)

    def take(name: str) -> bool:
        pool = pools[name]
        while cursor[name] < len(pool):
            marked = pool[cursor[name]]
            cursor[name] += 1
            written = {lang: _render(marked[lang], _WRITTEN) for lang in CORPUS_LANGUAGES}
            if any(written[lang] in taken[lang] for lang in CORPUS_LANGUAGES):
                continue
            for lang in CORPUS_LANGUAGES:
                taken[lang].add(written[lang])
            chosen.append(marked)
            return True
        return False

    for name, (_, share) in PATTERNS.items():
        quota = min(len(pools[name]), round(n * share / total_share))
        for _ in range(quota):
            if len(chosen) >= n or not take(name):
                break
    names = list(PATTERNS)
    while len(chosen) < n:
        progressed = False
        for name in rng.sample(names, len(names)):
            if len(chosen) >= n:
                break
            progressed |= take(name)
        if not progressed:
            raise CorpusError(f"the grammar ran out of distinct sentences after {len(chosen)} of {n}")
    return [_sentence(f"g{i:05d}", marked) for i, marked in enumerate(chosen)]
