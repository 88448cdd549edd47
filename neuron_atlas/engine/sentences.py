"""The built-in parallel sentences: short everyday sentences in the six corpus languages.

Each sentence has a stable number (`s000`, `s001`, ...) that aligns its translations; new sentences are only ever
appended, never reordered, so numbers keep their meaning across versions. The vocabulary is deliberately small
(numbers, colours, family, food, weather, travel, time) so that a small demo model can learn it.

Japanese is written only in kana because the espeak-ng engine cannot read kanji. In the Japanese source strings
the particles は and へ are marked `{wa}` and `{e}`: the text shows them as written (は, へ) while the speech
engine is given their pronunciation (わ, え), so the audio says what a reader would say.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from neuron_atlas.engine.example import CorpusError

_WRITTEN = {"{wa}": "は", "{e}": "へ"}
_SPOKEN = {"{wa}": "わ", "{e}": "え"}

#: Column order of `_ROWS` (Japanese carries the particle marks).
_ROW_LANGS: tuple[str, ...] = ("eng", "deu", "spa", "fra", "jpn", "cmn")

_ROWS: tuple[tuple[str, str, str, str, str, str], ...] = (
    ("The train leaves at seven.", "Der Zug fährt um sieben ab.", "El tren sale a las siete.",
     "Le train part à sept heures.", "でんしゃ{wa}しちじにでます。", "火车七点出发。"),
    ("My sister likes green tea.", "Meine Schwester mag grünen Tee.", "A mi hermana le gusta el té verde.",
     "Ma sœur aime le thé vert.", "わたしのいもうと{wa}りょくちゃがすきです。", "我妹妹喜欢绿茶。"),
    ("It is raining today.", "Heute regnet es.", "Hoy llueve.", "Il pleut aujourd'hui.",
     "きょう{wa}あめがふっています。", "今天下雨。"),
    ("The sky is blue.", "Der Himmel ist blau.", "El cielo es azul.", "Le ciel est bleu.", "そら{wa}あおいです。",
     "天空是蓝色的。"),
    ("I have two brothers.", "Ich habe zwei Brüder.", "Tengo dos hermanos.", "J'ai deux frères.",
     "わたしに{wa}おとこのきょうだいがふたりいます。", "我有两个兄弟。"),
    ("My father drinks coffee every morning.", "Mein Vater trinkt jeden Morgen Kaffee.",
     "Mi padre bebe café todas las mañanas.", "Mon père boit du café tous les matins.",
     "ちち{wa}まいあさコーヒーをのみます。", "我爸爸每天早上喝咖啡。"),
    ("The bus is late again.", "Der Bus hat wieder Verspätung.", "El autobús llega tarde otra vez.",
     "Le bus est encore en retard.", "バス{wa}またおくれています。", "公交车又晚点了。"),
    ("We eat dinner at six.", "Wir essen um sechs zu Abend.", "Cenamos a las seis.", "Nous dînons à six heures.",
     "わたしたち{wa}ろくじにばんごはんをたべます。", "我们六点吃晚饭。"),
    ("The apple is red.", "Der Apfel ist rot.", "La manzana es roja.", "La pomme est rouge.",
     "りんご{wa}あかいです。", "苹果是红色的。"),
    ("My mother works in a hospital.", "Meine Mutter arbeitet in einem Krankenhaus.",
     "Mi madre trabaja en un hospital.", "Ma mère travaille dans un hôpital.",
     "はは{wa}びょういんではたらいています。", "我妈妈在医院工作。"),
    ("It is very cold this morning.", "Heute Morgen ist es sehr kalt.", "Hace mucho frío esta mañana.",
     "Il fait très froid ce matin.", "けさ{wa}とてもさむいです。", "今天早上很冷。"),
    ("I would like a cup of coffee.", "Ich hätte gern eine Tasse Kaffee.", "Quisiera una taza de café.",
     "Je voudrais une tasse de café.", "コーヒーをいっぱいください。", "我想要一杯咖啡。"),
    ("The shop opens at nine.", "Der Laden öffnet um neun.", "La tienda abre a las nueve.",
     "Le magasin ouvre à neuf heures.", "みせ{wa}くじにあきます。", "商店九点开门。"),
    ("My brother has a black cat.", "Mein Bruder hat eine schwarze Katze.", "Mi hermano tiene un gato negro.",
     "Mon frère a un chat noir.", "あに{wa}くろいねこをかっています。", "我哥哥有一只黑猫。"),
    ("The children are playing in the park.", "Die Kinder spielen im Park.", "Los niños juegan en el parque.",
     "Les enfants jouent dans le parc.", "こどもたち{wa}こうえんであそんでいます。", "孩子们在公园里玩。"),
    ("Tomorrow will be sunny.", "Morgen wird es sonnig.", "Mañana hará sol.", "Demain, il y aura du soleil.",
     "あした{wa}はれるでしょう。", "明天会是晴天。"),
    ("I drink water with lunch.", "Ich trinke Wasser zum Mittagessen.", "Bebo agua con el almuerzo.",
     "Je bois de l'eau au déjeuner.", "ひるごはんのときにみずをのみます。", "我吃午饭的时候喝水。"),
    ("The plane lands at noon.", "Das Flugzeug landet am Mittag.", "El avión aterriza al mediodía.",
     "L'avion atterrit à midi.", "ひこうき{wa}しょうごにちゃくりくします。", "飞机中午降落。"),
    ("Her car is white.", "Ihr Auto ist weiß.", "Su coche es blanco.", "Sa voiture est blanche.",
     "かのじょのくるま{wa}しろいです。", "她的车是白色的。"),
    ("We have three children.", "Wir haben drei Kinder.", "Tenemos tres hijos.", "Nous avons trois enfants.",
     "わたしたちに{wa}こどもがさんにんいます。", "我们有三个孩子。"),
    ("The soup is too hot.", "Die Suppe ist zu heiß.", "La sopa está demasiado caliente.",
     "La soupe est trop chaude.", "スープ{wa}あつすぎます。", "汤太烫了。"),
    ("My grandmother makes good bread.", "Meine Großmutter backt gutes Brot.", "Mi abuela hace buen pan.",
     "Ma grand-mère fait du bon pain.", "そぼ{wa}おいしいパンをつくります。", "我奶奶做的面包很好吃。"),
    ("The museum is closed on Monday.", "Das Museum ist am Montag geschlossen.", "El museo está cerrado el lunes.",
     "Le musée est fermé le lundi.", "はくぶつかん{wa}げつようびがやすみです。", "博物馆星期一不开门。"),
    ("I take the bus to work.", "Ich fahre mit dem Bus zur Arbeit.", "Voy al trabajo en autobús.",
     "Je vais au travail en bus.", "わたし{wa}バスでしごとにいきます。", "我坐公交车去上班。"),
    ("Snow is falling in the mountains.", "In den Bergen schneit es.", "Nieva en las montañas.",
     "Il neige dans les montagnes.", "やまでゆきがふっています。", "山里在下雪。"),
    ("The bananas are yellow.", "Die Bananen sind gelb.", "Los plátanos son amarillos.", "Les bananes sont jaunes.",
     "バナナ{wa}きいろいです。", "香蕉是黄色的。"),
    ("My uncle lives in the city.", "Mein Onkel wohnt in der Stadt.", "Mi tío vive en la ciudad.",
     "Mon oncle habite en ville.", "おじ{wa}まちにすんでいます。", "我叔叔住在城里。"),
    ("The meeting starts at ten.", "Die Besprechung beginnt um zehn.", "La reunión empieza a las diez.",
     "La réunion commence à dix heures.", "かいぎ{wa}じゅうじにはじまります。", "会议十点开始。"),
    ("I eat rice every day.", "Ich esse jeden Tag Reis.", "Como arroz todos los días.",
     "Je mange du riz tous les jours.", "わたし{wa}まいにちごはんをたべます。", "我每天吃米饭。"),
    ("The wind is strong today.", "Heute ist der Wind stark.", "Hoy el viento es fuerte.",
     "Le vent est fort aujourd'hui.", "きょう{wa}かぜがつよいです。", "今天风很大。"),
    ("Where is the train station?", "Wo ist der Bahnhof?", "¿Dónde está la estación de tren?", "Où est la gare ?",
     "えき{wa}どこですか。", "火车站在哪里？"),
    ("The hotel is near the sea.", "Das Hotel liegt nahe am Meer.", "El hotel está cerca del mar.",
     "L'hôtel est près de la mer.", "ホテル{wa}うみのちかくにあります。", "酒店离海很近。"),
    ("My father is forty years old.", "Mein Vater ist vierzig Jahre alt.", "Mi padre tiene cuarenta años.",
     "Mon père a quarante ans.", "ちち{wa}よんじゅっさいです。", "我爸爸四十岁。"),
    ("She buys fish at the market.", "Sie kauft Fisch auf dem Markt.", "Ella compra pescado en el mercado.",
     "Elle achète du poisson au marché.", "かのじょ{wa}いちばでさかなをかいます。", "她在市场买鱼。"),
    ("The flowers in the garden are pink.", "Die Blumen im Garten sind rosa.", "Las flores del jardín son rosas.",
     "Les fleurs du jardin sont roses.", "にわのはな{wa}ピンクいろです。", "花园里的花是粉红色的。"),
    ("We go to the beach in summer.", "Im Sommer gehen wir an den Strand.", "En verano vamos a la playa.",
     "En été, nous allons à la plage.", "わたしたち{wa}なつにビーチにいきます。", "我们夏天去海滩。"),
    ("It is hot in August.", "Im August ist es heiß.", "En agosto hace calor.", "Il fait chaud en août.",
     "はちがつ{wa}あついです。", "八月很热。"),
    ("I have five apples.", "Ich habe fünf Äpfel.", "Tengo cinco manzanas.", "J'ai cinq pommes.",
     "りんごをいつつもっています。", "我有五个苹果。"),
    ("The tea is ready.", "Der Tee ist fertig.", "El té está listo.", "Le thé est prêt.", "おちゃができました。",
     "茶好了。"),
    ("My grandfather reads the newspaper every morning.", "Mein Großvater liest jeden Morgen die Zeitung.",
     "Mi abuelo lee el periódico cada mañana.", "Mon grand-père lit le journal chaque matin.",
     "そふ{wa}まいあさしんぶんをよみます。", "我爷爷每天早上看报纸。"),
    ("The taxi is waiting outside.", "Das Taxi wartet draußen.", "El taxi espera afuera.", "Le taxi attend dehors.",
     "タクシーがそとでまっています。", "出租车在外面等着。"),
    ("Lunch is at half past twelve.", "Das Mittagessen ist um halb eins.", "El almuerzo es a las doce y media.",
     "Le déjeuner est à midi et demi.", "ひるごはん{wa}じゅうにじはんです。", "午饭是十二点半。"),
    ("There are four chairs in the kitchen.", "In der Küche stehen vier Stühle.", "Hay cuatro sillas en la cocina.",
     "Il y a quatre chaises dans la cuisine.", "だいどころにいすがよっつあります。", "厨房里有四把椅子。"),
    ("The leaves turn red in autumn.", "Im Herbst werden die Blätter rot.", "En otoño las hojas se ponen rojas.",
     "En automne, les feuilles deviennent rouges.", "あきに{wa}はっぱがあかくなります。", "秋天树叶会变红。"),
    ("My aunt drinks milk with honey.", "Meine Tante trinkt Milch mit Honig.", "Mi tía bebe leche con miel.",
     "Ma tante boit du lait avec du miel.", "おば{wa}はちみついりのぎゅうにゅうをのみます。",
     "我阿姨喝加了蜂蜜的牛奶。"),
    ("The boat leaves at eight.", "Das Boot fährt um acht ab.", "El barco sale a las ocho.",
     "Le bateau part à huit heures.", "ふね{wa}はちじにでます。", "船八点出发。"),
    ("I like spring more than winter.", "Ich mag den Frühling lieber als den Winter.",
     "Me gusta más la primavera que el invierno.", "J'aime mieux le printemps que l'hiver.",
     "わたし{wa}ふゆよりはるがすきです。", "比起冬天，我更喜欢春天。"),
    ("The baby is sleeping now.", "Das Baby schläft jetzt.", "El bebé está durmiendo ahora.",
     "Le bébé dort maintenant.", "あかちゃん{wa}いまねています。", "宝宝现在在睡觉。"),
    ("We need six eggs.", "Wir brauchen sechs Eier.", "Necesitamos seis huevos.", "Nous avons besoin de six œufs.",
     "たまごがろっこいります。", "我们需要六个鸡蛋。"),
    ("The road is wet after the rain.", "Nach dem Regen ist die Straße nass.",
     "La calle está mojada después de la lluvia.", "La route est mouillée après la pluie.",
     "あめのあと、みち{wa}ぬれています。", "雨后路很湿。"),
    ("My cousin studies in Paris.", "Mein Cousin studiert in Paris.", "Mi primo estudia en París.",
     "Mon cousin étudie à Paris.", "いとこ{wa}パリでべんきょうしています。", "我表哥在巴黎学习。"),
    ("The door is green.", "Die Tür ist grün.", "La puerta es verde.", "La porte est verte.",
     "ドア{wa}みどりいろです。", "门是绿色的。"),
    ("I wake up at six every day.", "Ich stehe jeden Tag um sechs auf.", "Me levanto a las seis todos los días.",
     "Je me lève à six heures tous les jours.", "わたし{wa}まいにちろくじにおきます。", "我每天六点起床。"),
    ("The cake has eight candles.", "Auf dem Kuchen sind acht Kerzen.", "El pastel tiene ocho velas.",
     "Le gâteau a huit bougies.", "ケーキにろうそくがはっぽんあります。", "蛋糕上有八根蜡烛。"),
    ("It is windy by the sea.", "Am Meer ist es windig.", "Hace viento junto al mar.",
     "Il y a du vent au bord de la mer.", "うみのそば{wa}かぜがつよいです。", "海边风很大。"),
    ("My parents live in a small village.", "Meine Eltern wohnen in einem kleinen Dorf.",
     "Mis padres viven en un pueblo pequeño.", "Mes parents habitent dans un petit village.",
     "りょうしん{wa}ちいさなむらにすんでいます。", "我父母住在一个小村子里。"),
    ("The next train is in ten minutes.", "Der nächste Zug kommt in zehn Minuten.",
     "El próximo tren llega en diez minutos.", "Le prochain train arrive dans dix minutes.",
     "つぎのでんしゃ{wa}じゅっぷんごにきます。", "下一班火车十分钟后到。"),
    ("I want a glass of orange juice.", "Ich möchte ein Glas Orangensaft.", "Quiero un vaso de zumo de naranja.",
     "Je veux un verre de jus d'orange.", "オレンジジュースがいっぱいほしいです。", "我想要一杯橙汁。"),
    ("Our house has a red roof.", "Unser Haus hat ein rotes Dach.", "Nuestra casa tiene el techo rojo.",
     "Notre maison a un toit rouge.", "わたしたちのいえのやね{wa}あかいです。", "我们家的屋顶是红色的。"),
    ("The bread is fresh this morning.", "Das Brot ist heute Morgen frisch.", "El pan está fresco esta mañana.",
     "Le pain est frais ce matin.", "けさのパン{wa}やきたてです。", "今天早上的面包很新鲜。"),
    ("Clouds are coming from the west.", "Von Westen kommen Wolken.", "Vienen nubes del oeste.",
     "Des nuages arrivent de l'ouest.", "にしからくもがきています。", "云从西边飘过来了。"),
    ("My son is seven years old.", "Mein Sohn ist sieben Jahre alt.", "Mi hijo tiene siete años.",
     "Mon fils a sept ans.", "むすこ{wa}ななさいです。", "我儿子七岁。"),
    ("My daughter likes purple shoes.", "Meine Tochter mag lila Schuhe.", "A mi hija le gustan los zapatos morados.",
     "Ma fille aime les chaussures violettes.", "むすめ{wa}むらさきのくつがすきです。", "我女儿喜欢紫色的鞋子。"),
    ("We travel to Spain in July.", "Im Juli reisen wir nach Spanien.", "En julio viajamos a España.",
     "En juillet, nous voyageons en Espagne.", "わたしたち{wa}しちがつにスペイン{e}りょこうします。",
     "我们七月去西班牙旅行。"),
    ("The coffee is very strong.", "Der Kaffee ist sehr stark.", "El café está muy fuerte.", "Le café est très fort.",
     "コーヒー{wa}とてもこいです。", "咖啡很浓。"),
    ("I walk to school.", "Ich gehe zu Fuß zur Schule.", "Voy a la escuela a pie.", "Je vais à l'école à pied.",
     "わたし{wa}あるいてがっこうにいきます。", "我走路去学校。"),
    ("The airport is far from here.", "Der Flughafen ist weit von hier.", "El aeropuerto está lejos de aquí.",
     "L'aéroport est loin d'ici.", "くうこう{wa}ここからとおいです。", "机场离这里很远。"),
    ("Ten people are waiting for the bus.", "Zehn Leute warten auf den Bus.", "Diez personas esperan el autobús.",
     "Dix personnes attendent le bus.", "じゅうにんがバスをまっています。", "十个人在等公交车。"),
    ("My wife cooks fish on Fridays.", "Meine Frau kocht freitags Fisch.", "Mi esposa cocina pescado los viernes.",
     "Ma femme cuisine du poisson le vendredi.", "つま{wa}きんようびにさかなをりょうりします。",
     "我妻子每个星期五做鱼。"),
    ("My husband likes hot soup.", "Mein Mann mag heiße Suppe.", "A mi marido le gusta la sopa caliente.",
     "Mon mari aime la soupe chaude.", "おっと{wa}あついスープがすきです。", "我丈夫喜欢热汤。"),
    ("The film starts at eight in the evening.", "Der Film beginnt um acht Uhr abends.",
     "La película empieza a las ocho de la noche.", "Le film commence à huit heures du soir.",
     "えいが{wa}よるのはちじにはじまります。", "电影晚上八点开始。"),
    ("The weather is nice today.", "Heute ist das Wetter schön.", "Hoy hace buen tiempo.",
     "Il fait beau aujourd'hui.", "きょう{wa}いいてんきです。", "今天天气很好。"),
    ("The grey cat sleeps on the sofa.", "Die graue Katze schläft auf dem Sofa.", "El gato gris duerme en el sofá.",
     "Le chat gris dort sur le canapé.", "はいいろのねこがソファでねています。", "灰色的猫在沙发上睡觉。"),
    ("My room is small but bright.", "Mein Zimmer ist klein, aber hell.", "Mi habitación es pequeña pero luminosa.",
     "Ma chambre est petite mais claire.", "わたしのへや{wa}せまいけれどあかるいです。", "我的房间很小，但是很亮。"),
    ("We drink tea in the afternoon.", "Nachmittags trinken wir Tee.", "Tomamos té por la tarde.",
     "Nous buvons du thé l'après-midi.", "わたしたち{wa}ごごにおちゃをのみます。", "我们下午喝茶。"),
    ("The tickets cost twenty euros.", "Die Fahrkarten kosten zwanzig Euro.", "Los billetes cuestan veinte euros.",
     "Les billets coûtent vingt euros.", "きっぷ{wa}にじゅうユーロです。", "票价是二十欧元。"),
    ("I lost my blue umbrella.", "Ich habe meinen blauen Regenschirm verloren.", "Perdí mi paraguas azul.",
     "J'ai perdu mon parapluie bleu.", "あおいかさをなくしました。", "我把蓝色的雨伞丢了。"),
    ("The river is very cold in winter.", "Im Winter ist der Fluss sehr kalt.", "En invierno el río está muy frío.",
     "En hiver, la rivière est très froide.", "ふゆ{wa}かわのみずがとてもつめたいです。", "冬天河水很冷。"),
    ("Please speak more slowly.", "Bitte sprechen Sie langsamer.", "Por favor, hable más despacio.",
     "Parlez plus lentement, s'il vous plaît.", "もっとゆっくりはなしてください。", "请说慢一点。"),
    ("My friend arrives on Sunday.", "Mein Freund kommt am Sonntag an.", "Mi amigo llega el domingo.",
     "Mon ami arrive dimanche.", "ともだち{wa}にちようびにつきます。", "我的朋友星期天到。"),
    ("The station has three exits.", "Der Bahnhof hat drei Ausgänge.", "La estación tiene tres salidas.",
     "La gare a trois sorties.", "えきに{wa}でぐちがみっつあります。", "车站有三个出口。"),
    ("I eat an orange for breakfast.", "Zum Frühstück esse ich eine Orange.", "Desayuno una naranja.",
     "Je mange une orange au petit déjeuner.", "あさごはんにオレンジをたべます。", "我早饭吃一个橙子。"),
    ("The sun rises at five in summer.", "Im Sommer geht die Sonne um fünf auf.",
     "En verano el sol sale a las cinco.", "En été, le soleil se lève à cinq heures.",
     "なつ{wa}ごじにひがのぼります。", "夏天太阳五点升起。"),
    ("My sister is a teacher.", "Meine Schwester ist Lehrerin.", "Mi hermana es profesora.",
     "Ma sœur est professeure.", "いもうと{wa}きょうしです。", "我妹妹是老师。"),
    ("The milk is in the fridge.", "Die Milch ist im Kühlschrank.", "La leche está en la nevera.",
     "Le lait est dans le frigo.", "ぎゅうにゅう{wa}れいぞうこにあります。", "牛奶在冰箱里。"),
    ("We missed the last bus.", "Wir haben den letzten Bus verpasst.", "Perdimos el último autobús.",
     "Nous avons raté le dernier bus.", "わたしたち{wa}さいしゅうバスにのりおくれました。", "我们错过了末班车。"),
    ("Her dress is orange.", "Ihr Kleid ist orange.", "Su vestido es naranja.", "Sa robe est orange.",
     "かのじょのドレス{wa}オレンジいろです。", "她的裙子是橙色的。"),
    ("It will snow tonight.", "Heute Nacht wird es schneien.", "Esta noche va a nevar.", "Il va neiger cette nuit.",
     "こんや{wa}ゆきがふるでしょう。", "今天晚上会下雪。"),
    ("The library closes at five.", "Die Bibliothek schließt um fünf.", "La biblioteca cierra a las cinco.",
     "La bibliothèque ferme à cinq heures.", "としょかん{wa}ごじにしまります。", "图书馆五点关门。"),
    ("My family eats together on Sunday.", "Meine Familie isst sonntags zusammen.",
     "Mi familia come junta los domingos.", "Ma famille mange ensemble le dimanche.",
     "かぞく{wa}にちようびにいっしょにごはんをたべます。", "我的家人星期天一起吃饭。"),
    ("I need a new suitcase.", "Ich brauche einen neuen Koffer.", "Necesito una maleta nueva.",
     "J'ai besoin d'une nouvelle valise.", "あたらしいスーツケースがひつようです。", "我需要一个新行李箱。"),
    ("The water is clear and cold.", "Das Wasser ist klar und kalt.", "El agua está clara y fría.",
     "L'eau est claire et froide.", "みず{wa}すんでいてつめたいです。", "水又清又凉。"),
    ("Grandpa tells stories after dinner.", "Opa erzählt nach dem Abendessen Geschichten.",
     "El abuelo cuenta historias después de cenar.", "Grand-père raconte des histoires après le dîner.",
     "おじいさん{wa}ばんごはんのあとでおはなしをします。", "爷爷晚饭后讲故事。"),
    ("Two coffees and one tea, please.", "Zwei Kaffee und einen Tee, bitte.", "Dos cafés y un té, por favor.",
     "Deux cafés et un thé, s'il vous plaît.", "コーヒーをふたつとおちゃをひとつください。",
     "请来两杯咖啡和一杯茶。"),
    ("The bridge is long and white.", "Die Brücke ist lang und weiß.", "El puente es largo y blanco.",
     "Le pont est long et blanc.", "はし{wa}ながくてしろいです。", "桥又长又白。"),
    ("My brother drives a red car.", "Mein Bruder fährt ein rotes Auto.", "Mi hermano conduce un coche rojo.",
     "Mon frère conduit une voiture rouge.", "あに{wa}あかいくるまをうんてんします。", "我哥哥开一辆红色的车。"),
    ("It is foggy this morning.", "Heute Morgen ist es neblig.", "Hay niebla esta mañana.",
     "Il y a du brouillard ce matin.", "けさ{wa}きりがでています。", "今天早上有雾。"),
    ("We stay at the hotel for two nights.", "Wir bleiben zwei Nächte im Hotel.",
     "Nos quedamos dos noches en el hotel.", "Nous restons deux nuits à l'hôtel.",
     "わたしたち{wa}ホテルにふたばんとまります。", "我们在酒店住两晚。"),
    ("The strawberries are sweet.", "Die Erdbeeren sind süß.", "Las fresas son dulces.", "Les fraises sont sucrées.",
     "いちご{wa}あまいです。", "草莓很甜。"),
    ("My mother sings in the kitchen.", "Meine Mutter singt in der Küche.", "Mi madre canta en la cocina.",
     "Ma mère chante dans la cuisine.", "はは{wa}だいどころでうたいます。", "我妈妈在厨房里唱歌。"),
    ("The doctor comes at eleven.", "Der Arzt kommt um elf.", "El médico viene a las once.",
     "Le médecin vient à onze heures.", "いしゃ{wa}じゅういちじにきます。", "医生十一点来。"),
    ("I forgot my ticket at home.", "Ich habe meine Fahrkarte zu Hause vergessen.", "Olvidé mi billete en casa.",
     "J'ai oublié mon billet à la maison.", "きっぷをいえにわすれました。", "我把票忘在家里了。"),
    ("The sea is calm today.", "Das Meer ist heute ruhig.", "El mar está tranquilo hoy.",
     "La mer est calme aujourd'hui.", "きょう{wa}うみがおだやかです。", "今天海面很平静。"),
    ("Our dog is brown and white.", "Unser Hund ist braun und weiß.", "Nuestro perro es marrón y blanco.",
     "Notre chien est marron et blanc.", "うちのいぬ{wa}ちゃいろとしろです。", "我们家的狗是棕色和白色的。"),
    ("Dinner is ready in five minutes.", "Das Abendessen ist in fünf Minuten fertig.",
     "La cena estará lista en cinco minutos.", "Le dîner sera prêt dans cinq minutes.",
     "ばんごはん{wa}あとごふんでできます。", "晚饭五分钟后就好。"),
    ("The train to Berlin is full.", "Der Zug nach Berlin ist voll.", "El tren a Berlín está lleno.",
     "Le train pour Berlin est plein.", "ベルリンいきのでんしゃ{wa}まんせきです。", "去柏林的火车满了。"),
    ("My grandparents visit us in December.", "Meine Großeltern besuchen uns im Dezember.",
     "Mis abuelos nos visitan en diciembre.", "Mes grands-parents nous rendent visite en décembre.",
     "そふぼ{wa}じゅうにがつにあそびにきます。", "我爷爷奶奶十二月来看我们。"),
    ("I like cheese and tomatoes.", "Ich mag Käse und Tomaten.", "Me gustan el queso y los tomates.",
     "J'aime le fromage et les tomates.", "わたし{wa}チーズとトマトがすきです。", "我喜欢奶酪和西红柿。"),
    ("The night is dark and quiet.", "Die Nacht ist dunkel und still.", "La noche es oscura y tranquila.",
     "La nuit est sombre et calme.", "よる{wa}くらくてしずかです。", "夜晚又黑又安静。"),
    ("We arrive in Tokyo on Tuesday.", "Wir kommen am Dienstag in Tokio an.", "Llegamos a Tokio el martes.",
     "Nous arrivons à Tokyo mardi.", "わたしたち{wa}かようびにとうきょうにつきます。", "我们星期二到东京。"),
    ("My little brother is three years old.", "Mein kleiner Bruder ist drei Jahre alt.",
     "Mi hermano pequeño tiene tres años.", "Mon petit frère a trois ans.", "おとうと{wa}さんさいです。",
     "我弟弟三岁。"),
    ("The shirt is too big.", "Das Hemd ist zu groß.", "La camisa es demasiado grande.",
     "La chemise est trop grande.", "シャツ{wa}おおきすぎます。", "这件衬衫太大了。"),
    ("It rained all night.", "Es hat die ganze Nacht geregnet.", "Llovió toda la noche.", "Il a plu toute la nuit.",
     "ひとばんじゅうあめがふっていました。", "雨下了一整夜。"),
    ("The post office is next to the bank.", "Die Post ist neben der Bank.",
     "La oficina de correos está al lado del banco.", "La poste est à côté de la banque.",
     "ゆうびんきょく{wa}ぎんこうのとなりです。", "邮局在银行旁边。"),
    ("I drink two cups of tea a day.", "Ich trinke zwei Tassen Tee am Tag.", "Bebo dos tazas de té al día.",
     "Je bois deux tasses de thé par jour.", "わたし{wa}いちにちにおちゃをにはいのみます。", "我一天喝两杯茶。"),
    ("The children go to bed at eight.", "Die Kinder gehen um acht ins Bett.", "Los niños se acuestan a las ocho.",
     "Les enfants se couchent à huit heures.", "こどもたち{wa}はちじにねます。", "孩子们八点睡觉。"),
    ("Our flight is delayed by one hour.", "Unser Flug hat eine Stunde Verspätung.",
     "Nuestro vuelo tiene una hora de retraso.", "Notre vol a une heure de retard.",
     "わたしたちのひこうき{wa}いちじかんおくれています。", "我们的航班晚点了一个小时。"),
    ("The grass is green after the rain.", "Nach dem Regen ist das Gras grün.",
     "Después de la lluvia, la hierba está verde.", "Après la pluie, l'herbe est verte.",
     "あめのあと、くさ{wa}みどりいろです。", "雨后草是绿色的。"),
    ("My father cooks on Saturday.", "Mein Vater kocht am Samstag.", "Mi padre cocina los sábados.",
     "Mon père cuisine le samedi.", "ちち{wa}どようびにりょうりをします。", "我爸爸星期六做饭。"),
    ("The window is open.", "Das Fenster ist offen.", "La ventana está abierta.", "La fenêtre est ouverte.",
     "まどがあいています。", "窗户开着。"),
    ("I have a cold today.", "Ich bin heute erkältet.", "Hoy estoy resfriado.", "Je suis enrhumé aujourd'hui.",
     "きょう{wa}かぜをひいています。", "我今天感冒了。"),
    ("The market is busy on Saturday.", "Am Samstag ist der Markt sehr belebt.",
     "El sábado el mercado está muy animado.", "Le marché est animé le samedi.", "どようび{wa}いちばがにぎやかです。",
     "星期六市场很热闹。"),
    ("We eat noodles for lunch.", "Wir essen Nudeln zum Mittagessen.", "Almorzamos fideos.",
     "Nous mangeons des nouilles au déjeuner.", "わたしたち{wa}ひるごはんにめんをたべます。", "我们午饭吃面条。"),
    ("The mountain is covered in snow.", "Der Berg ist mit Schnee bedeckt.", "La montaña está cubierta de nieve.",
     "La montagne est couverte de neige.", "やま{wa}ゆきでおおわれています。", "山上覆盖着雪。"),
    ("My niece is nine years old.", "Meine Nichte ist neun Jahre alt.", "Mi sobrina tiene nueve años.",
     "Ma nièce a neuf ans.", "めい{wa}きゅうさいです。", "我侄女九岁。"),
    ("Breakfast is at half past seven.", "Das Frühstück ist um halb acht.", "El desayuno es a las siete y media.",
     "Le petit déjeuner est à sept heures et demie.", "あさごはん{wa}しちじはんです。", "早饭是七点半。"),
    ("I am going home now.", "Ich gehe jetzt nach Hause.", "Ahora me voy a casa.",
     "Je rentre à la maison maintenant.", "いまからいえにかえります。", "我现在回家。"),
    ("How much is this bag?", "Wie viel kostet diese Tasche?", "¿Cuánto cuesta este bolso?", "Combien coûte ce sac ?",
     "このかばん{wa}いくらですか。", "这个包多少钱？"),
    ("Thank you for the delicious dinner.", "Danke für das leckere Abendessen.", "Gracias por la deliciosa cena.",
     "Merci pour le délicieux dîner.", "おいしいばんごはんをありがとうございます。", "谢谢你做的晚饭，真好吃。"),
    ("See you tomorrow morning.", "Bis morgen früh.", "Hasta mañana por la mañana.", "À demain matin.",
     "またあしたのあさにあいましょう。", "明天早上见。"),
)


@dataclass(frozen=True)
class Sentence:
    """One built-in sentence: its stable id, its text per language, and the text the speech engine reads."""

    id: str
    texts: Mapping[str, str] = field(hash=False)
    spoken: Mapping[str, str] = field(hash=False)

    def text(self, lang: str) -> str:
        """The written sentence in `lang` (raises CorpusError for a language the corpus lacks)."""
        if lang not in self.texts:
            raise CorpusError(f"built-in sentence {self.id} has no language {lang!r}; known: {sorted(self.texts)}")
        return self.texts[lang]

    def speech_text(self, lang: str) -> str:
        """What the speech engine is given for `lang` (differs from `text` only for Japanese particles)."""
        self.text(lang)
        return self.spoken[lang]


def _render(marked: str, table: Mapping[str, str]) -> str:
    for mark, kana in table.items():
        marked = marked.replace(mark, kana)
    return marked


def _build() -> tuple[Sentence, ...]:
    out = []
    for number, row in enumerate(_ROWS):
        texts = dict(zip(_ROW_LANGS, row))
        spoken = dict(texts)
        marked = texts["jpn"]
        texts["jpn"] = _render(marked, _WRITTEN)
        spoken["jpn"] = _render(marked, _SPOKEN)
        out.append(Sentence(f"s{number:03d}", MappingProxyType(texts), MappingProxyType(spoken)))
    return tuple(out)


#: All built-in sentences in id order (`s000`, `s001`, ...).
SENTENCES: tuple[Sentence, ...] = _build()

#: Sentence id -> sentence.
SENTENCES_BY_ID: Mapping[str, Sentence] = MappingProxyType({s.id: s for s in SENTENCES})
