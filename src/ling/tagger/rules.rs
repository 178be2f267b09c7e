//! A rule-based English tagger for text without a treebank: closed-class word lists (UD
//! English conventions: possessive pronouns are `PRON`, every form of *be* is `AUX`),
//! punctuation and number shapes, suffix heuristics for open-class words, and the previous
//! tags for what is left. Causal: position `i` looks at `words[i]`, `words[i-1]` and the
//! tags already chosen.

use super::features::{is_punct, norm, word_class, WordClass};
use super::Tagger;
use crate::ling::Upos;

/// Closed classes (lower-case forms).
const DET: &[&str] = &[
    "the", "a", "an", "this", "these", "those", "every", "each", "some", "any", "no", "all",
    "both", "either", "neither", "another", "such",
];
const PRON: &[&str] = &[
    "i",
    "me",
    "myself",
    "you",
    "yourself",
    "yourselves",
    "he",
    "him",
    "himself",
    "she",
    "herself",
    "it",
    "itself",
    "we",
    "us",
    "ourselves",
    "they",
    "them",
    "themselves",
    "who",
    "whom",
    "whose",
    "what",
    "which",
    "whoever",
    "whatever",
    "mine",
    "yours",
    "hers",
    "ours",
    "theirs",
    "something",
    "anything",
    "nothing",
    "everything",
    "someone",
    "anyone",
    "everyone",
    "somebody",
    "anybody",
    "everybody",
    "nobody",
    "none",
    "one",
    "ones",
];
/// Possessive pronouns (`PRON` before a noun phrase).
const POSS: &[&str] = &["my", "your", "his", "her", "its", "our", "their"];
const ADP: &[&str] = &[
    "of",
    "in",
    "for",
    "with",
    "on",
    "at",
    "by",
    "from",
    "about",
    "into",
    "through",
    "over",
    "after",
    "between",
    "under",
    "against",
    "during",
    "without",
    "within",
    "along",
    "across",
    "behind",
    "beyond",
    "near",
    "upon",
    "toward",
    "towards",
    "among",
    "around",
    "per",
    "via",
    "despite",
    "except",
    "onto",
    "inside",
    "outside",
    "throughout",
    "beside",
    "besides",
    "above",
    "below",
    "beneath",
    "amongst",
    "unlike",
    "like",
    "than",
    "off",
    "out",
    "up",
    "down",
];
const CCONJ: &[&str] = &["and", "or", "but", "nor", "&", "yet", "plus"];
const SCONJ: &[&str] = &[
    "because", "if", "while", "although", "though", "whether", "unless", "since", "until", "till",
    "whereas", "when", "once", "before", "so",
];
const AUX: &[&str] = &[
    "is", "are", "was", "were", "be", "been", "being", "am", "'m", "'re", "have", "has", "had",
    "having", "'ve", "'d", "do", "does", "did", "will", "would", "can", "could", "shall", "should",
    "may", "might", "must", "'ll", "ca", "wo", "ai",
];
const BE: &[&str] = &[
    "is", "are", "was", "were", "be", "been", "being", "am", "'m", "'re", "'s",
];
const PART: &[&str] = &["not", "n't", "'s", "’s"];
const NUM: &[&str] = &[
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
    "thirty",
    "forty",
    "fifty",
    "sixty",
    "seventy",
    "eighty",
    "ninety",
    "hundred",
    "thousand",
    "million",
    "billion",
    "dozen",
];
const INTJ: &[&str] = &[
    "yes", "oh", "hi", "hello", "thanks", "please", "wow", "ok", "okay", "yeah", "hey", "um", "uh",
    "ah", "lol", "bye", "ugh", "oops", "hmm", "yep", "nope",
];
const ADV: &[&str] = &[
    "very",
    "too",
    "also",
    "just",
    "then",
    "now",
    "here",
    "there",
    "again",
    "always",
    "never",
    "often",
    "already",
    "still",
    "even",
    "only",
    "really",
    "quite",
    "more",
    "most",
    "less",
    "least",
    "how",
    "why",
    "where",
    "ever",
    "soon",
    "today",
    "yesterday",
    "tomorrow",
    "later",
    "ago",
    "away",
    "back",
    "else",
    "perhaps",
    "maybe",
    "almost",
    "well",
    "rather",
    "instead",
    "however",
    "therefore",
    "thus",
    "hence",
    "sometimes",
    "usually",
    "once",
    "together",
    "enough",
    "far",
    "much",
    "abroad",
    "anyway",
    "tonight",
    "forward",
    "home",
    "alone",
    "indeed",
    "otherwise",
    "meanwhile",
    "nevertheless",
    "somewhat",
];
/// Words ending in -ly that are not adverbs.
const LY_NOT_ADV: &[&str] = &[
    "only",
    "family",
    "early",
    "likely",
    "friendly",
    "lovely",
    "daily",
    "july",
    "italy",
    "reply",
    "supply",
    "apply",
    "rely",
    "fly",
    "ugly",
    "holy",
    "silly",
    "lonely",
    "elderly",
    "weekly",
    "monthly",
    "yearly",
    "costly",
    "deadly",
    "lively",
    "unlikely",
    "assembly",
    "ally",
    "belly",
    "bully",
    "jelly",
    "rally",
    "tally",
    "anomaly",
    "butterfly",
    "monopoly",
];

fn is_in(list: &[&str], w: &str) -> bool {
    list.contains(&w)
}

/// The rule-based tagger. Stateless.
#[derive(Clone, Copy, Debug, Default)]
pub struct RuleTagger;

impl RuleTagger {
    /// A tagger.
    pub fn new() -> Self {
        RuleTagger
    }

    fn closed(&self, lw: &str, prev: Option<Upos>, prev_word: Option<&str>) -> Option<Upos> {
        use Upos::*;
        let after_nominal = matches!(prev, Some(Noun | Propn));
        let after_pred = matches!(prev, Some(Verb | Adj | Adv | Aux));
        Some(match lw {
            // The three-way "that": relative pronoun after a noun, complementiser after a
            // predicate, determiner elsewhere.
            "that" if after_nominal => Pron,
            "that" if after_pred => Sconj,
            "that" => Det,
            // Infinitival "to" after predicates and pronouns, the preposition elsewhere.
            "to" if matches!(prev, Some(Verb | Adj | Aux | Pron)) => Part,
            "to" => Adp,
            // "'s": possessive after nominals, the verb "is"/"has" after pronouns.
            "'s" | "’s" if matches!(prev, Some(Pron)) => Aux,
            "her" if matches!(prev, Some(Verb | Adp)) => Pron,
            "there" if prev.is_none() || matches!(prev, Some(Cconj | Sconj | Punct)) => Pron,
            "before" | "after" | "since" | "until"
                if prev.is_none() || matches!(prev, Some(Punct)) =>
            {
                Sconj
            }
            "so" if matches!(prev, Some(Aux | Verb)) => Adv,
            "like" if matches!(prev, Some(Aux | Pron | Part)) => Verb,
            "no" if prev.is_none() && prev_word.is_none() => Intj,
            w if is_in(PART, w) => Part,
            w if is_in(POSS, w) => Pron,
            w if is_in(PRON, w) => Pron,
            w if is_in(DET, w) => Det,
            w if is_in(AUX, w) => Aux,
            w if is_in(CCONJ, w) => Cconj,
            w if is_in(SCONJ, w) => Sconj,
            w if is_in(ADP, w) => Adp,
            w if is_in(NUM, w) => Num,
            w if is_in(INTJ, w) => Intj,
            w if is_in(ADV, w) => Adv,
            _ => return None,
        })
    }

    fn open(&self, w: &str, lw: &str, i: usize, prev: &[Upos], prev_lw: &str) -> Upos {
        use Upos::*;
        let p2 = prev.len().checked_sub(2).map(|k| prev[k]);
        let prev = prev.last().copied();
        match word_class(w) {
            WordClass::Punct => return Punct,
            WordClass::Symbol => return Sym,
            WordClass::Number => return Num,
            WordClass::Web => return X,
            WordClass::InitCap | WordClass::AllCaps if i > 0 => return Propn,
            _ => {}
        }
        let ends = |s: &str| lw.len() > s.len() + 2 && lw.ends_with(s);
        if ends("ly") && !is_in(LY_NOT_ADV, lw) {
            return Adv;
        }
        if ends("ing") {
            return if matches!(prev, Some(Det | Adj)) || is_in(POSS, prev_lw) {
                Noun
            } else {
                Verb
            };
        }
        if ends("ed") {
            return if matches!(prev, Some(Det)) { Adj } else { Verb };
        }
        for s in [
            "tion", "sion", "ment", "ness", "ity", "ance", "ence", "ship", "ism", "ist", "hood",
            "dom", "ure", "age", "ery",
        ] {
            if ends(s) {
                return Noun;
            }
        }
        for s in [
            "ous", "ful", "ive", "able", "ible", "al", "ic", "less", "ish", "ary", "ent", "ant",
        ] {
            if ends(s) {
                return Adj;
            }
        }
        if ends("ize") || ends("ise") || ends("ify") {
            return if matches!(prev, Some(Det | Adj)) {
                Noun
            } else {
                Verb
            };
        }
        // Context for everything else.
        let be = is_in(BE, prev_lw);
        let verbal = lw.ends_with('s') || lw.ends_with("ed");
        match prev {
            // "the big dog": the word after a determiner was an adjective if another
            // uninflected word follows it.
            Some(Noun) if matches!(p2, Some(Det | Num)) && !verbal => Noun,
            Some(Noun) if matches!(p2, Some(Adp)) && !lw.ends_with("ed") => Noun,
            Some(Det | Num | Adj | Adp) => Noun,
            Some(Pron) if is_in(POSS, prev_lw) => Noun,
            Some(Aux) if be => Adj,
            Some(Pron | Noun | Propn | Aux | Part) => Verb,
            _ => Noun,
        }
    }
}

impl Tagger for RuleTagger {
    fn name(&self) -> String {
        "rules".into()
    }
    fn tag_next(&self, words: &[&str], prev: &[Upos]) -> Upos {
        let i = words.len() - 1;
        let w = words[i];
        let lw = norm(w);
        let p = prev.last().copied();
        let prev_lw = if i > 0 {
            norm(words[i - 1])
        } else {
            String::new()
        };
        if is_punct(w) {
            return Upos::Punct;
        }
        if let Some(t) = self.closed(&lw, p, (i > 0).then_some(prev_lw.as_str())) {
            // A capitalised closed-class word inside a sentence may be a name ("May", "Will").
            if i > 0
                && w.chars().next().is_some_and(char::is_uppercase)
                && lw.len() > 1
                && t != Upos::Pron
            {
                let is_i = lw == "i";
                if !is_i && matches!(p, Some(Upos::Propn)) {
                    return Upos::Propn;
                }
            }
            return t;
        }
        self.open(w, &lw, i, prev, &prev_lw)
    }
}
