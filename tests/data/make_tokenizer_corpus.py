#!/usr/bin/env python3
"""Writes tokenizer_corpus.json: the strings the tokenizer parity test encodes with both proxykv::Tokenizer and the
reference JS implementation (tests/integration/tokenizer_parity). Deterministic; re-run after editing:

    python3 tests/data/make_tokenizer_corpus.py > tests/data/tokenizer_corpus.json

Left out on purpose, because the two *reference* implementations disagree there (HF's Rust/Oniguruma and the JS
port), so no single answer exists to test against:
  - U+FEFF and U+0085 next to spaces: JS's \\s includes U+FEFF and excludes U+0085, Oniguruma/PCRE2 the reverse.
  - letters and digits new in Unicode 15 (our PCRE2 tables are Unicode 14).
"""
import json
import sys

corpus = []


def add(*items):
    corpus.extend(items)


# Empty and trivial.
add("", " ", "a", "A", ".", "\n", "\t", "Hello", "hello world", "Hello, World!")

# ASCII prose.
add(
    "The quick brown fox jumps over the lazy dog.",
    "It was the best of times, it was the worst of times; it was the age of wisdom.",
    "Tokenizers split text into pieces; models only ever see the ids.",
    "KV cache compression keeps the important tokens and drops the rest.",
    "A long-context model reads 128k tokens, then answers a question about token 97,341.",
    "Mr. Smith paid $1,234.56 for 3.5 kg of apples (about 7.7 lb) on 2024-03-15.",
    "She said: \"Don't panic!\" -- and then, quietly, 'it's fine'.",
    "e.g. i.e. etc. vs. a.k.a. U.S.A. Ph.D.",
    "Question? Answer! Exclamation!! Ellipsis... Interrobang?!",
    "ALL CAPS SENTENCE WITH SHOUTING",
    "camelCaseIdentifier snake_case_identifier kebab-case-identifier SCREAMING_SNAKE",
    "the the the the the the the the the the",
    "supercalifragilisticexpialidocious antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "abababababababababababababababab",
    "#hashtag @mention email@example.com +1-555-0100",
)

# Contractions, including upper case ones the (?i:...) group handles.
add(
    "it's we're they'll I'm you've he'd can't won't",
    "IT'S WE'RE THEY'LL I'M YOU'VE HE'D CAN'T WON'T",
    "It'S We'Re They'Ll I'M",
    "the cat's toy, the dogs' toys, James's book",
    "'s 're 'll 've 'm 'd 't",
    "rock 'n' roll, 'twas, o'clock, y'all'd've",
    "don''t  ' s  it ' s",
    "’s curly apostrophe isn’t a contraction",
)

# Accents, European languages.
add(
    "café naïve résumé façade coöperate jalapeño",
    "Größe, Straße, Übermut, Ärger, Öl — schön!",
    "Les élèves français étudient à l'école où ils apprennent l'histoire.",
    "¿Dónde está la biblioteca? ¡Está allí, señor!",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Ça va? Très bien, merci. Et toi?",
    "Português: ação, coração, pão, não, São Paulo.",
    "Polski: zażółć gęślą jaźń. Čeština: příliš žluťoučký kůň.",
    "Norsk/Dansk: blåbærsyltetøy, Ærø, øl.",
    "Türkçe: İstanbul, ığdır, şeker, çiçek, ğ.",
    "Ελληνικά: Γειά σου Κόσμε, ΑΒΓΔ αβγδ.",
    "Русский: Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Українська: Гей, хлопці, ґанок, їжак, є.",
    "Tiếng Việt: Xin chào thế giới, cảm ơn nhiều.",
    "Íslenska: Þetta er ðað sem ég segi.",
)

# Combining characters and other text that NFC changes.
add(
    "e\u0301",
    "cafe\u0301",
    "Cafe\u0301 de\u0301ja\u0300 vu",
    "n\u0303 a\u0308 o\u0308 u\u0308 A\u030a",
    "\u1e0b\u0323",  # d with dot above + dot below: reordered
    "q\u0307\u0323",  # no precomposed form: reordered marks only
    "\u1100\u1161\u11a8 \u1112\u1161\u11ab",  # conjoining jamo compose into Hangul syllables
    "\u212b ohm \u2126 kelvin \u212a",  # singletons: Angstrom, Ohm (Kelvin stays under NFC)
    "\uf900\uf901 compatibility ideographs",
    "e\u0301e\u0301e\u0301 \u0301 leading mark",
    "a\u0300\u0301\u0302\u0303\u0304 stacked",
)

# CJK.
add(
    "你好，世界！",
    "我爱自然语言处理。今天天气很好，我们去公园散步吧。",
    "中华人民共和国成立于1949年10月1日。",
    "北京、上海、广州和深圳是中国的大城市。",
    "日本語のテキストです。ひらがな、カタカナ、漢字が混ざっています。",
    "東京は日本の首都です。私は寿司が大好きです！",
    "カタカナ　ﾊﾝｶｸｶﾀｶﾅ　全角スペース",
    "한국어 텍스트입니다. 안녕하세요, 세계!",
    "대한민국의 수도는 서울입니다. 김치찌개를 좋아해요.",
    "混合：English和中文mixed在一起123个",
    "「引用」『二重引用』【括弧】〈山括弧〉《書名》",
    "𠀀𠀁𪚥 𩸽 supplementary ideographs",
)

# Other scripts.
add(
    "مرحبا بالعالم! هذه جملة عربية.",
    "العربية: ١٢٣٤٥٦٧٨٩٠ أرقام هندية",
    "שלום עולם! זה משפט בעברית.",
    "नमस्ते दुनिया! यह हिंदी में एक वाक्य है।",
    "हिन्दी संख्याएँ: ०१२३४५६७८९",
    "สวัสดีชาวโลก ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ",
    "বাংলা: আমি বাংলায় গান গাই।",
    "தமிழ்: வணக்கம் உலகம்",
    "ქართული: გამარჯობა მსოფლიო",
    "Հայերեն: Բարեւ աշխարհ",
    "አማርኛ: ሰላም ዓለም",
    "ᚠᚢᚦᚨᚱᚲ runes and ⲁⲃⲅ Coptic",
    "English עברית العربية 中文 mixed בשורה אחת",
)

# Emoji, including ZWJ sequences, skin tones, flags and keycaps.
add(
    "😀",
    "I love 🍕 and 🍣!",
    "👍👍🏻👍🏼👍🏽👍🏾👍🏿",
    "👨‍👩‍👧‍👦 family, 👩‍💻 technologist, 🏳️‍🌈 flag",
    "🧑🏽‍🚀 astronaut with skin tone",
    "🇩🇪🇫🇷🇯🇵🇺🇸 flags",
    "1️⃣ 2️⃣ #️⃣ keycaps",
    "❤️ ♥ ☺️ ✌🏿 variation selectors",
    "emoji🙂inside🙂words",
    "🔥🔥🔥🔥🔥🔥🔥🔥",
    "👁️‍🗨️ 🐻‍❄️ 🫠",
)

# Digit runs of many lengths (Qwen splits every digit on its own).
for length in range(1, 26):
    add("".join(str((i * 7 + 3) % 10) for i in range(length)))
add(
    "0", "00", "007", "1234567890", "3.14159265358979323846", "1e-10", "-42", "+3.0e+8", "0x1F 0b1010 0o777",
    "version 1.2.3-rc.4+build.567", "ISBN 978-3-16-148410-0", "12:30:45.123", "1,000,000", "1.000.000,00",
    "x1y22z333", "٣ Arabic-Indic, ३ Devanagari, ३३, ①②③, ⅠⅡⅢ, ½ ¾",
    "123abc456def", "abc123", "2024年3月15日",
)

# Whitespace of every kind.
add(
    "  leading spaces", "trailing spaces  ", "   both   ", "multiple     spaces    inside",
    "tab\tseparated\tvalues", "\t\tleading tabs", "trailing tab\t",
    "line one\nline two\nline three", "windows\r\nline\r\nendings\r\n", "old mac\rline",
    "blank lines\n\n\nbetween", "\n\n\n", "   \n   \n", " \t \n \r\n ", "mixed \t\n whitespace \t\n",
    "indent\n    four\n        eight", "trailing newline\n", "\nleading newline",
    "space before newline \nand after\n next", "a\u00a0non-breaking\u00a0space", "ideographic\u3000space",
    "en\u2002em\u2003thin\u2009hair\u200a spaces", "line\u2028separator", "zero\u200bwidth\u200cnon\u200djoiner",
    "                                                                ",
    "\n" * 20,
)

# Code.
add(
    "#include <iostream>\nint main() {\n  std::cout << \"Hello\" << std::endl;\n  return 0;\n}\n",
    "template <typename T>\nT max(T a, T b) { return a > b ? a : b; }",
    "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }",
    "auto ptr = std::make_unique<std::vector<int>>(42);",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "class Foo:\n\tdef __init__(self):\n\t\tself.x = {'a': 1, \"b\": [2, 3]}\n",
    "print(f\"{x!r:>10} {y:.3f}\")  # comment",
    "import numpy as np\narr = np.zeros((3, 4), dtype=np.float32)",
    "{\"name\": \"proxykv\", \"version\": \"0.1.0\", \"deps\": [\"json\", \"pcre2\"], \"ok\": true, \"n\": null}",
    "[{\"id\":1,\"tags\":[]},{\"id\":2,\"tags\":[\"x\"]}]",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name;",
    "<html><body><p class=\"x\">Hi &amp; bye</p></body></html>",
    "$ ls -la | grep '\\.cpp$' && echo \"done\" > /dev/null 2>&1",
    "fn main() { let v: Vec<u8> = vec![1, 2, 3]; println!(\"{:?}\", v); }",
    "x => x * 2; a ?? b; c?.d; e !== f; g >>>= 1;",
    "    if (a && b || !c) {\n        return;\n    }",
    "// TODO(someone): fix this\n/* block\n   comment */",
    "a+=1;b-=2;c*=3;d/=4;e%=5;f**=6;g//=7;h<<=8;i>>=9",
    "::std::vector<::std::pair<int,int>>",
    "regex: ^[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\\.[a-zA-Z]{2,}$",
)

# URLs and paths.
add(
    "https://www.example.com/path/to/page?query=value&other=123#section",
    "http://localhost:8080/api/v1/generate",
    "ftp://user:pass@ftp.example.org/file.tar.gz",
    "Visit https://huggingface.co/Qwen/Qwen3-8B for details.",
    "/usr/local/lib/libproxykv.so.0.1.0",
    "C:\\Users\\Public\\Documents\\file.txt",
    "git@github.com:owner/repo.git",
    "mailto:someone@example.com?subject=Hello%20World",
)

# Special and added tokens embedded in text.
add(
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n",
    "before<|endoftext|>after",
    "text <|im_end|> text",
    "<|im_start|><|im_end|><|endoftext|>",
    "<think>\nLet me think step by step.\n</think>\n\nThe answer is 42.",
    "<tool_call>\n{\"name\": \"search\", \"arguments\": {\"q\": \"weather\"}}\n</tool_call>",
    "<tool_response>sunny</tool_response>",
    "<|fim_prefix|>def f():<|fim_suffix|>\n    return 1<|fim_middle|>",
    "<|vision_start|><|image_pad|><|vision_end|>",
    "<|im_start|> spaced <|im_end|>",
    "not special: <|im_start> <im_end|> <|unknown|> < |im_start| >",
    "<|im_start|<|im_start|>|>",
    "<<|endoftext|>>",
    "<|endoftext|><|endoftext|><|endoftext|>",
    "<think></think>",
    "<|repo_name|>proxykv<|file_sep|>README.md",
)

# Full-width forms, math and symbols.
add(
    "ＦＵＬＬＷＩＤＴＨ ｌｅｔｔｅｒｓ ａｎｄ ０１２３４５６７８９",
    "全角：！＂＃＄％＆＇（）＊＋，－．／",
    "∀x∈ℝ: x² ≥ 0; ∑ᵢ aᵢ = ∫₀¹ f(x) dx ≈ π/4",
    "E = mc²; H₂O; α + β = γ; ∂f/∂x; ∇·F = 0",
    "≤ ≥ ≠ ≈ ∞ √ ∛ ∝ ∅ ∩ ∪ ⊂ ⊃ ⊆ ⊇ ⊕ ⊗",
    "→ ← ↑ ↓ ↔ ⇒ ⇐ ⇔ ↦",
    "€100 £50 ¥1000 ₹500 ₿0.01 ¢ ₩ ₽",
    "© ® ™ § ¶ † ‡ • ‰ ′ ″",
    "─────── ═══ ║ ╔╗╚╝ ▲▼◆○●",
    "♠♣♥♦ ♩♪♫♬ ☀☁☂☃",
    "ﬁ ﬂ ligatures, ｶﾀｶﾅ half-width, ㍿ ㌔ squared",
    "𝐁𝐨𝐥𝐝 𝑰𝒕𝒂𝒍𝒊𝒄 𝔉𝔯𝔞𝔨𝔱𝔲𝔯 𝟙𝟚𝟛 math alphanumerics",
    "Ω ≠ Ω, Å ≠ Å",
)

# Mixed scripts and odd mixtures.
add(
    "Hello世界123こんにちは!",
    "Привет, world! 你好 🌍",
    "naïve—café–résumé…",
    "«guillemets» „Anführungszeichen“ “curly” ‘single’",
    "snake_case_日本語_mixed",
    "ABCdefGHIjkl",
    "a1b2c3d4e5f6g7h8i9j0",
    "x\u0000y null byte",
    "control\u0001\u0002\u0007\u001b[0mchars",
    "\u007f delete and \u0080\u009f C1 controls",
    "tab\tand emoji\t🙂\tand CJK\t中",
    "!!!???...,,,;;;:::",
    "((()))[[[]]]{{{}}}<<<>>>",
    "-----=====+++++*****",
    "__init__ __main__ ___",
    "''''' \"\"\"\"\" ````` ~~~~~",
    "a  b   c    d     e",
    "The year 2024 had 366 days; 2023 had 365.",
    "Call 911 or +49 30 1234567.",
    "CO2 H2SO4 C6H12O6 x86_64 ARMv8 GPT4o Qwen3-8B",
)

# Longer paragraphs.
add(
    "Long-context language models are expensive to serve because the key-value cache grows linearly with the "
    "length of the context. A small proxy model can score which tokens matter, and a mapper transfers those "
    "scores to the larger target model, which then keeps only the selected entries. This trades a little "
    "accuracy for a large reduction in memory.",
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et "
    "dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris nisi ut aliquip ex "
    "ea commodo consequat.",
    "在自然语言处理领域，分词是最基础的步骤之一。不同的模型使用不同的分词器，例如字节级BPE、WordPiece和SentencePiece。",
    "Die Würde des Menschen ist unantastbar. Sie zu achten und zu schützen ist Verpflichtung aller staatlichen "
    "Gewalt.",
)

assert len(corpus) >= 220, len(corpus)
assert len(set(corpus)) == len(corpus), "duplicate corpus entries"
json.dump(corpus, sys.stdout, ensure_ascii=False, indent=1)
sys.stdout.write("\n")
print(f"{len(corpus)} strings", file=sys.stderr)
