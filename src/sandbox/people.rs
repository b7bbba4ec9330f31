//! Fake but realistic people: names, e-mail addresses and phone numbers.
//!
//! The names are what the `privacy.no_pii_in_logs` check looks for in the
//! integration's output, so they are built to catch careless redaction: about a
//! quarter come from built-in naming cultures with diacritics and other scripts
//! ("Zoë Ğürsoy", "Nguyễn Thị Hoa", "Дмитрий Иванов", "김민준"), given and family
//! names combined within a culture, the rest from the `fake` crate in several locales, and every tenth candidate (index ≡ 1 mod 10) is a near
//! duplicate of the one before it ("Jon Smith" after "John Smith", "Jose Nunez" after
//! "José Núñez", a doubled letter otherwise).
//!
//! A name depends only on (seed, stream, index) — a near duplicate also on its
//! predecessor's, which is recomputed rather than remembered — so a candidate's name
//! never changes when others are added. E-mail addresses are the ASCII-folded name at
//! a reserved example domain; they must be unique, so the generator remembers every
//! address issued and numbers a repeat (`john.smith.2@example.com`).

use std::collections::{HashMap, HashSet};

use fake::Fake;
use fake::faker::name::raw::Name;
use fake::faker::phone_number::raw::PhoneNumber;
use fake::locales::{AR_SA, DE_DE, EN, FR_FR, IT_IT, JA_JP, NL_NL, PT_BR, TR_TR, ZH_CN};
use rand::RngExt;
use rand::seq::IndexedRandom;
use rand_chacha::ChaCha8Rng;

use super::derive_rng;
use super::model::Person;

/// Whole names with diacritics and other scripts, the classic stress cases.
pub const DIVERSE_NAMES: &[&str] = &[
    "Zoë Ğürsoy",
    "José Núñez",
    "Łukasz Żółć",
    "Aoife Ní Bhriain",
    "Nguyễn Thị Hoa",
    "Siobhán O'Sullivan",
    "François-Xavier Lemaître",
    "Þórunn Guðmundsdóttir",
];

/// Given and family names of one naming culture, and whether the family name leads.
struct Culture {
    given: &'static [&'static str],
    family: &'static [&'static str],
    family_first: bool,
    separator: &'static str,
}

/// Naming cultures whose names `fake` lacks: combined within a culture, so a name
/// stays plausible, and combined at all, so a large dataset repeats few of them.
const CULTURES: &[Culture] = &[
    Culture {
        given: &["Zoë", "Çağrı", "Şebnem", "Oğuz", "Gülşen", "Gökhan"],
        family: &["Ğürsoy", "Çelik", "Öztürk", "Şahin", "Yıldız", "Kılıç"],
        family_first: false,
        separator: " ",
    },
    Culture {
        given: &["José", "Begoña", "Íñigo", "Ana-María", "Jesús", "Inés"],
        family: &["Núñez", "Gutiérrez", "Muñoz", "Ibáñez", "Peña", "Díaz"],
        family_first: false,
        separator: " ",
    },
    Culture {
        given: &[
            "Łukasz",
            "Małgorzata",
            "Wojciech",
            "Zofia",
            "Jędrzej",
            "Bożena",
        ],
        family: &[
            "Żółć",
            "Wiśniewski",
            "Szczęsny",
            "Łęcki",
            "Kowalczyk",
            "Wójcik",
        ],
        family_first: false,
        separator: " ",
    },
    Culture {
        given: &["Aoife", "Siobhán", "Seán", "Niamh", "Pádraig", "Caoimhe"],
        family: &[
            "Ní Bhriain",
            "O'Sullivan",
            "Ó Súilleabháin",
            "Mac Giolla",
            "Ní Dhomhnaill",
            "Ó Briain",
        ],
        family_first: false,
        separator: " ",
    },
    Culture {
        given: &[
            "Thị Hoa",
            "Văn Lâm",
            "Minh Đức",
            "Thu Hằng",
            "Quốc Bảo",
            "Ngọc Ánh",
        ],
        family: &["Nguyễn", "Trần", "Lê", "Phạm", "Đặng", "Hoàng"],
        family_first: true,
        separator: " ",
    },
    Culture {
        given: &["Björn", "Søren", "Åsa", "Þórunn", "Ilkka", "Sigríður"],
        family: &[
            "Ångström",
            "Kjærgård",
            "Guðmundsdóttir",
            "Määttä",
            "Østergaard",
            "Sæther",
        ],
        family_first: false,
        separator: " ",
    },
    Culture {
        given: &[
            "Chloé",
            "François-Xavier",
            "Hélène",
            "Jérôme",
            "Maëlle",
            "Noël",
        ],
        family: &[
            "Lefèvre",
            "Lemaître",
            "Bérubé",
            "Gérard",
            "Dubœuf",
            "Pâquet",
        ],
        family_first: false,
        separator: " ",
    },
    Culture {
        given: &["Jiří", "Řehoř", "Věra", "Kateřina", "Ondřej", "Žofie"],
        family: &[
            "Dvořák",
            "Novotná",
            "Černý",
            "Procházka",
            "Kučera",
            "Růžička",
        ],
        family_first: false,
        separator: " ",
    },
    Culture {
        given: &[
            "Olúwaseun",
            "Chidinma",
            "Ngozi",
            "Adébáyọ̀",
            "Chúkwúdí",
            "Fúnmiláyọ̀",
        ],
        family: &[
            "Adébáyọ̀",
            "Okonkwo-Adéyemí",
            "Ògúnlẹ́yẹ",
            "Bánkọ́lé",
            "Nwáńkwọ",
            "Ọláníyan",
        ],
        family_first: false,
        separator: " ",
    },
    Culture {
        given: &[
            "Αλέξανδρος",
            "Ελένη",
            "Γιώργος",
            "Μαρία",
            "Δημήτρης",
            "Κατερίνα",
        ],
        family: &[
            "Παπαδόπουλος",
            "Νικολάου",
            "Οικονόμου",
            "Γεωργίου",
            "Βλάχου",
            "Ιωάννου",
        ],
        family_first: false,
        separator: " ",
    },
    Culture {
        given: &["Дмитрий", "Анна", "Сергей", "Ольга", "Наталья", "Алексей"],
        family: &[
            "Иванов",
            "Смирнова",
            "Кузнецов",
            "Попова",
            "Соколов",
            "Лебедева",
        ],
        family_first: false,
        separator: " ",
    },
    Culture {
        given: &["محمد", "فاطمة", "عمر", "ليلى", "يوسف", "مريم"],
        family: &[
            "العلي",
            "الحسن",
            "القحطاني",
            "الشمري",
            "الزهراني",
            "العتيبي",
        ],
        family_first: false,
        separator: " ",
    },
    Culture {
        given: &["花子", "太郎", "結衣", "翔", "美咲", "健太"],
        family: &["佐藤", "鈴木", "高橋", "田中", "渡辺", "伊藤"],
        family_first: true,
        separator: " ",
    },
    Culture {
        given: &["민준", "서연", "지호", "하은", "도윤", "수아"],
        family: &["김", "이", "박", "최", "정", "강"],
        family_first: true,
        separator: "",
    },
];

/// Spelling variants that make convincing near duplicates of a first name.
const VARIANTS: &[(&str, &str)] = &[
    ("John", "Jon"),
    ("Jon", "John"),
    ("Catherine", "Katherine"),
    ("Katherine", "Catherine"),
    ("Stephen", "Steven"),
    ("Steven", "Stephen"),
    ("Sara", "Sarah"),
    ("Sarah", "Sara"),
    ("Mohammed", "Muhammad"),
    ("Mohammad", "Mohammed"),
    ("Muhammad", "Mohamed"),
    ("Philip", "Phillip"),
    ("Jeffrey", "Geoffrey"),
    ("Geoffrey", "Jeffrey"),
    ("Ann", "Anne"),
    ("Anne", "Ann"),
    ("Zoe", "Zoey"),
    ("Zoey", "Zoe"),
];

/// Reserved example domains (RFC 2606), so no address can reach a real person.
const DOMAINS: &[&str] = &["example.com", "example.org", "example.net", "mail.example"];

/// Which family of candidates a person belongs to; each draws from its own streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Candidates of a manifest or a generated dataset.
    Seeded,
    /// The out-of-scope controls the harness adds.
    Control,
}

impl Stream {
    fn label(self) -> &'static str {
        match self {
            Stream::Seeded => "seeded",
            Stream::Control => "control",
        }
    }
}

/// Where a name came from; phones follow the same locale.
#[derive(Debug, Clone, Copy)]
enum Origin {
    Diverse,
    En,
    Fr,
    De,
    PtBr,
    Tr,
    It,
    Nl,
    ZhCn,
    JaJp,
    ArSa,
}

/// Generates people deterministically and keeps their e-mail addresses unique.
#[derive(Debug)]
pub struct PersonGenerator {
    seed: u64,
    issued: HashSet<String>,
    /// The next number to try per base address, so the thousandth "José Núñez"
    /// costs one lookup rather than a thousand.
    next_number: HashMap<String, u64>,
}

impl PersonGenerator {
    /// A generator for one seed, with no address issued yet.
    pub fn new(seed: u64) -> Self {
        PersonGenerator {
            seed,
            issued: HashSet::new(),
            next_number: HashMap::new(),
        }
    }

    /// The person at `index` of `stream`.
    pub fn person(&mut self, stream: Stream, index: u64) -> Person {
        let (base, origin) = base_name(self.seed, stream, index);
        let mut rng = derive_rng(self.seed, &format!("person/{}", stream.label()), index);
        let name = match index.checked_sub(1) {
            Some(previous) if index % 10 == 1 => {
                let (previous, _) = base_name(self.seed, stream, previous);
                near_duplicate(&previous, &mut rng)
            }
            _ => base,
        };
        let domain = DOMAINS.choose(&mut rng).copied().unwrap_or("example.com");
        let email = self.unique_email(&email_local_part(&name), domain);
        Person {
            name: name.into(),
            email: email.into(),
            phone: phone(origin, &mut rng).into(),
        }
    }

    /// Marks an address as taken, so no later person gets it.
    pub fn reserve(&mut self, email: &str) {
        self.issued.insert(email.to_owned());
    }

    fn unique_email(&mut self, local: &str, domain: &str) -> String {
        let mut email = format!("{local}@{domain}");
        if self.issued.contains(&email) {
            let next = self.next_number.entry(email.clone()).or_insert(2);
            loop {
                let numbered = format!("{local}.{next}@{domain}");
                *next += 1;
                if !self.issued.contains(&numbered) {
                    email = numbered;
                    break;
                }
            }
        }
        self.issued.insert(email.clone());
        email
    }
}

/// The name a candidate would have if it were not a near duplicate, and its origin.
fn base_name(seed: u64, stream: Stream, index: u64) -> (String, Origin) {
    let mut rng = derive_rng(seed, &format!("name/{}", stream.label()), index);
    let roll = rng.random_range(0..100u32);
    let origin = match roll {
        0..25 => Origin::Diverse,
        25..55 => Origin::En,
        55..61 => Origin::Fr,
        61..67 => Origin::De,
        67..73 => Origin::PtBr,
        73..79 => Origin::Tr,
        79..84 => Origin::It,
        84..89 => Origin::Nl,
        89..94 => Origin::ZhCn,
        94..97 => Origin::JaJp,
        _ => Origin::ArSa,
    };
    let name: String = match origin {
        Origin::Diverse => diverse_name(&mut rng),
        Origin::En => Name(EN).fake_with_rng(&mut rng),
        Origin::Fr => Name(FR_FR).fake_with_rng(&mut rng),
        Origin::De => Name(DE_DE).fake_with_rng(&mut rng),
        Origin::PtBr => Name(PT_BR).fake_with_rng(&mut rng),
        Origin::Tr => Name(TR_TR).fake_with_rng(&mut rng),
        Origin::It => Name(IT_IT).fake_with_rng(&mut rng),
        Origin::Nl => Name(NL_NL).fake_with_rng(&mut rng),
        Origin::ZhCn => Name(ZH_CN).fake_with_rng(&mut rng),
        Origin::JaJp => Name(JA_JP).fake_with_rng(&mut rng),
        Origin::ArSa => Name(AR_SA).fake_with_rng(&mut rng),
    };
    (name, origin)
}

/// A name from [`CULTURES`], now and then one of the [`DIVERSE_NAMES`] whole.
fn diverse_name(rng: &mut ChaCha8Rng) -> String {
    if rng.random_bool(0.05)
        && let Some(name) = DIVERSE_NAMES.choose(rng)
    {
        return (*name).to_owned();
    }
    let Some(culture) = CULTURES.choose(rng) else {
        return DIVERSE_NAMES[0].to_owned();
    };
    let given = culture.given.choose(rng).copied().unwrap_or_default();
    let family = culture.family.choose(rng).copied().unwrap_or_default();
    let (first, second) = if culture.family_first {
        (family, given)
    } else {
        (given, family)
    };
    format!("{first}{}{second}", culture.separator)
}

/// A different but confusable spelling of `name`.
pub fn near_duplicate(name: &str, rng: &mut ChaCha8Rng) -> String {
    let mut words: Vec<&str> = name.split(' ').collect();
    if let Some(first) = words.first_mut()
        && let Some((_, variant)) = VARIANTS.iter().find(|(from, _)| from == first)
    {
        *first = variant;
        return words.join(" ");
    }
    let folded = deunicode::deunicode(name);
    // Folding a Latin name keeps its shape ("José Núñez" → "Jose Nunez"); folding
    // another script transliterates it, which is a different name, not a near one.
    if folded != name && folded.split(' ').count() == words.len() && is_mostly_latin(name) {
        return folded;
    }
    // A doubled letter in the last word: the typo an ATS import most often carries.
    let last = words.last().copied().unwrap_or(name);
    let chars: Vec<char> = last.chars().collect();
    if chars.is_empty() {
        return format!("{name} {name}");
    }
    let at = rng.random_range(0..chars.len());
    let mut typo = String::with_capacity(last.len() + 4);
    for (i, c) in chars.iter().enumerate() {
        typo.push(*c);
        if i == at {
            typo.extend(c.to_lowercase());
        }
    }
    let prefix_len = name.len() - last.len();
    format!("{}{typo}", &name[..prefix_len])
}

fn is_mostly_latin(name: &str) -> bool {
    let letters = name.chars().filter(|c| c.is_alphabetic()).count();
    let latin = name
        .chars()
        .filter(|c| c.is_alphabetic() && (c.is_ascii() || ('\u{00C0}'..='\u{024F}').contains(c)))
        .count();
    latin * 2 > letters
}

/// The local part of an address for `name`: ASCII-folded words joined by dots.
pub fn email_local_part(name: &str) -> String {
    let folded = deunicode::deunicode(name).to_ascii_lowercase();
    let words: Vec<&str> = folded
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let mut local = String::with_capacity(folded.len());
    for word in words {
        // Long transliterations make unwieldy addresses; real ones stay short.
        if local.len() + word.len() > 40 {
            break;
        }
        if !local.is_empty() {
            local.push('.');
        }
        local.push_str(word);
    }
    if local.is_empty() {
        "candidate".to_owned()
    } else {
        local
    }
}

fn phone(origin: Origin, rng: &mut ChaCha8Rng) -> String {
    match origin {
        Origin::Fr => PhoneNumber(FR_FR).fake_with_rng(rng),
        Origin::De => PhoneNumber(DE_DE).fake_with_rng(rng),
        Origin::PtBr => PhoneNumber(PT_BR).fake_with_rng(rng),
        Origin::Tr => PhoneNumber(TR_TR).fake_with_rng(rng),
        Origin::It => PhoneNumber(IT_IT).fake_with_rng(rng),
        Origin::Nl => PhoneNumber(NL_NL).fake_with_rng(rng),
        Origin::ZhCn => PhoneNumber(ZH_CN).fake_with_rng(rng),
        Origin::JaJp => PhoneNumber(JA_JP).fake_with_rng(rng),
        Origin::ArSa => PhoneNumber(AR_SA).fake_with_rng(rng),
        Origin::Diverse | Origin::En => PhoneNumber(EN).fake_with_rng(rng),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn near_duplicates_are_close_but_different() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        // (name, expected near duplicate or None for "some typo", why)
        let rows: &[(&str, Option<&str>, &str)] = &[
            (
                "John Smith",
                Some("Jon Smith"),
                "spelling variant of the first name",
            ),
            ("José Núñez", Some("Jose Nunez"), "diacritics dropped"),
            ("Zoë Ğürsoy", Some("Zoe Gursoy"), "diacritics dropped"),
            (
                "Дмитрий Иванов",
                None,
                "another script gets a typo, not a transliteration",
            ),
            ("Gustave Smitham", None, "plain ASCII gets a doubled letter"),
        ];
        for (name, expected, why) in rows {
            let near = near_duplicate(name, &mut rng);
            assert_ne!(&near, name, "{why}");
            match expected {
                Some(expected) => assert_eq!(&near, expected, "{why}"),
                None => assert_eq!(
                    near.chars().count(),
                    name.chars().count() + 1,
                    "{why}: {near}"
                ),
            }
        }
    }

    #[test]
    fn email_local_parts_are_ascii_folded() {
        // (name, local part, why)
        let rows = [
            ("Zoë Ğürsoy", "zoe.gursoy", "diacritics folded"),
            ("Aoife Ní Bhriain", "aoife.ni.bhriain", "every word kept"),
            (
                "Siobhán O'Sullivan",
                "siobhan.o.sullivan",
                "apostrophes split words",
            ),
            (
                "Nguyễn Thị Hoa",
                "nguyen.thi.hoa",
                "Vietnamese tones folded",
            ),
            (
                "Дмитрий Иванов",
                "dmitrii.ivanov",
                "Cyrillic transliterated",
            ),
            ("!!!", "candidate", "nothing usable left"),
        ];
        for (name, local, why) in rows {
            assert_eq!(email_local_part(name), local, "{why}");
        }
    }

    #[test]
    fn emails_are_unique_and_names_stable_when_candidates_are_added() {
        let mut few = PersonGenerator::new(9);
        let first: Vec<Person> = (0..20).map(|i| few.person(Stream::Seeded, i)).collect();
        let mut many = PersonGenerator::new(9);
        let more: Vec<Person> = (0..2000).map(|i| many.person(Stream::Seeded, i)).collect();
        assert_eq!(first, more[..20], "appending candidates changes nobody");
        let emails: HashSet<&str> = more.iter().map(|p| p.email.as_str()).collect();
        assert_eq!(emails.len(), more.len(), "every address is unique");
        assert!(more.iter().all(|p| p.email.is_ascii()));
        assert!(
            more.iter().any(|p| !p.name.is_ascii()),
            "non-ASCII names occur"
        );
        let fold = |s: &str| deunicode::deunicode(s).to_lowercase();
        for i in (1..2000).step_by(10) {
            let (a, b) = (&more[i - 1].name, &more[i].name);
            assert!(
                a != b && strsim::jaro_winkler(&fold(a), &fold(b)) > 0.85,
                "{a:?} / {b:?} are near duplicates"
            );
        }
    }
}
