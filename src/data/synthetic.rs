//! The embedded default corpus: English-like sentences from a small probabilistic grammar,
//! each token with its gold UPOS tag and gold dependency head (UD conventions: determiners,
//! adjectives and case-marking adpositions attach to their noun; subjects and objects to the
//! verb; the copula to its adjective; conjoined and subordinate clauses to the main clause).
//!
//! Syntax decides what earlier words predict the next one:
//! - **agreement**: determiner–noun (`this dog` / `these dogs`), subject–verb in the present
//!   tense (`runs` / `run`, `is` / `are`), also across a relative clause
//!   (`the dogs that the boy saw are …`);
//! - **argument structure**: intransitive, transitive and ditransitive (`gives X to Y`) verbs
//!   with selectional restrictions (only animate subjects `eat`; `read` takes readable objects);
//! - **attachment**: prepositional phrases on the verb or the object noun;
//! - **pronouns referring back**: a second clause's subject pronoun agrees in number and
//!   gender with the first clause's subject (`Alice smiled and she …`), reflexives likewise.
//!
//! Deterministic: the same seed gives the same sentences on every platform.

use super::Sentence;
use crate::ling::Upos;
use crate::rng::Rng;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Gender {
    Masc,
    Fem,
    Neut,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Class {
    Person,
    Animal,
    Readable,
    Food,
    Thing,
    Place,
}

struct Noun {
    sg: &'static str,
    pl: &'static str,
    gender: Gender,
    class: Class,
}

const fn n(sg: &'static str, pl: &'static str, gender: Gender, class: Class) -> Noun {
    Noun {
        sg,
        pl,
        gender,
        class,
    }
}

use Class::*;
use Gender::*;

const NOUNS: &[Noun] = &[
    n("man", "men", Masc, Person),
    n("woman", "women", Fem, Person),
    n("boy", "boys", Masc, Person),
    n("girl", "girls", Fem, Person),
    n("king", "kings", Masc, Person),
    n("queen", "queens", Fem, Person),
    n("farmer", "farmers", Masc, Person),
    n("teacher", "teachers", Fem, Person),
    n("dog", "dogs", Neut, Animal),
    n("cat", "cats", Neut, Animal),
    n("bird", "birds", Neut, Animal),
    n("horse", "horses", Neut, Animal),
    n("book", "books", Neut, Readable),
    n("letter", "letters", Neut, Readable),
    n("story", "stories", Neut, Readable),
    n("apple", "apples", Neut, Food),
    n("cake", "cakes", Neut, Food),
    n("ball", "balls", Neut, Thing),
    n("box", "boxes", Neut, Thing),
    n("key", "keys", Neut, Thing),
    n("telescope", "telescopes", Neut, Thing),
    n("park", "parks", Neut, Place),
    n("garden", "gardens", Neut, Place),
    n("river", "rivers", Neut, Place),
    n("house", "houses", Neut, Place),
];

const NAMES: &[(&str, Gender)] = &[
    ("Alice", Fem),
    ("Mary", Fem),
    ("Emma", Fem),
    ("Bob", Masc),
    ("John", Masc),
    ("Tom", Masc),
];

/// A verb: base, 3rd-person singular present, past; its argument frame; which subject
/// and object classes it accepts.
struct Verb {
    base: &'static str,
    s3: &'static str,
    past: &'static str,
    frame: Frame,
    objects: &'static [Class],
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Frame {
    Intransitive,
    Transitive,
    Ditransitive,
}

const ANY_OBJ: &[Class] = &[Person, Animal, Readable, Food, Thing];
const VERBS: &[Verb] = &[
    Verb {
        base: "sleep",
        s3: "sleeps",
        past: "slept",
        frame: Frame::Intransitive,
        objects: &[],
    },
    Verb {
        base: "run",
        s3: "runs",
        past: "ran",
        frame: Frame::Intransitive,
        objects: &[],
    },
    Verb {
        base: "laugh",
        s3: "laughs",
        past: "laughed",
        frame: Frame::Intransitive,
        objects: &[],
    },
    Verb {
        base: "arrive",
        s3: "arrives",
        past: "arrived",
        frame: Frame::Intransitive,
        objects: &[],
    },
    Verb {
        base: "see",
        s3: "sees",
        past: "saw",
        frame: Frame::Transitive,
        objects: ANY_OBJ,
    },
    Verb {
        base: "like",
        s3: "likes",
        past: "liked",
        frame: Frame::Transitive,
        objects: ANY_OBJ,
    },
    Verb {
        base: "chase",
        s3: "chases",
        past: "chased",
        frame: Frame::Transitive,
        objects: &[Person, Animal, Thing],
    },
    Verb {
        base: "find",
        s3: "finds",
        past: "found",
        frame: Frame::Transitive,
        objects: &[Person, Animal, Readable, Food, Thing],
    },
    Verb {
        base: "read",
        s3: "reads",
        past: "read",
        frame: Frame::Transitive,
        objects: &[Readable],
    },
    Verb {
        base: "write",
        s3: "writes",
        past: "wrote",
        frame: Frame::Transitive,
        objects: &[Readable],
    },
    Verb {
        base: "eat",
        s3: "eats",
        past: "ate",
        frame: Frame::Transitive,
        objects: &[Food],
    },
    Verb {
        base: "give",
        s3: "gives",
        past: "gave",
        frame: Frame::Ditransitive,
        objects: &[Readable, Food, Thing],
    },
    Verb {
        base: "send",
        s3: "sends",
        past: "sent",
        frame: Frame::Ditransitive,
        objects: &[Readable, Thing],
    },
    Verb {
        base: "show",
        s3: "shows",
        past: "showed",
        frame: Frame::Ditransitive,
        objects: &[Readable, Thing, Animal],
    },
];

/// Adjectives with the classes they can describe.
const ADJS: &[(&str, &[Class])] = &[
    ("big", &[Animal, Thing, Place, Readable]),
    ("small", &[Animal, Thing, Place, Food, Readable]),
    ("old", &[Person, Animal, Thing, Place, Readable]),
    ("young", &[Person, Animal]),
    ("happy", &[Person, Animal]),
    ("clever", &[Person, Animal]),
    ("red", &[Thing, Food, Readable]),
    ("quiet", &[Person, Animal, Place]),
];
const ADVS: &[&str] = &["quickly", "slowly", "often", "again", "today"];
const LOCATIVE_ADPS: &[&str] = &["in", "near", "behind"];
const SCONJS: &[&str] = &["because", "when", "while"];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Tense {
    Present,
    Past,
    Future,
}

/// Number and gender of a noun phrase (for agreement and pronouns).
#[derive(Clone, Copy, Debug)]
struct Agr {
    plural: bool,
    gender: Gender,
    class: Class,
}

struct Builder<'r> {
    rng: &'r mut Rng,
    forms: Vec<String>,
    tags: Vec<Upos>,
    heads: Vec<u32>, // 1-based, 0 = root
}

impl Builder<'_> {
    fn push(&mut self, form: &str, tag: Upos) -> u32 {
        self.forms.push(form.to_string());
        self.tags.push(tag);
        self.heads.push(0);
        self.forms.len() as u32
    }
    /// Push one of `words`, chosen uniformly.
    fn push_any(&mut self, words: &[&str], tag: Upos) -> u32 {
        let w = *self.pick(words);
        self.push(w, tag)
    }
    fn attach(&mut self, dep: u32, head: u32) {
        self.heads[dep as usize - 1] = head;
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.rng.below(xs.len())]
    }
    fn p(&mut self, p: f64) -> bool {
        self.rng.bernoulli(p)
    }

    /// A noun phrase of an allowed class; returns its head and agreement.
    fn noun_phrase(&mut self, classes: &[Class], allow_rel: bool, depth: usize) -> (u32, Agr) {
        let want_name = classes.contains(&Person) && self.p(0.15);
        if want_name {
            let &(name, gender) = self.pick(NAMES);
            let h = self.push(name, Upos::Propn);
            return (
                h,
                Agr {
                    plural: false,
                    gender,
                    class: Person,
                },
            );
        }
        let candidates: Vec<&Noun> = NOUNS
            .iter()
            .filter(|n| classes.contains(&n.class))
            .collect();
        let noun = *self.pick(&candidates);
        let plural = self.p(0.4);
        let mut deps = Vec::new();
        // determiner or numeral, agreeing in number
        let det = if plural {
            if self.p(0.2) {
                (*self.pick(&["two", "three", "four"]), Upos::Num)
            } else {
                (
                    *self.pick(&["the", "the", "these", "those", "some"]),
                    Upos::Det,
                )
            }
        } else {
            (
                *self.pick(&["the", "the", "a", "this", "that", "every"]),
                Upos::Det,
            )
        };
        deps.push(self.push(det.0, det.1));
        if self.p(0.3) {
            let adjs: Vec<&str> = ADJS
                .iter()
                .filter(|(_, cl)| cl.contains(&noun.class))
                .map(|(a, _)| *a)
                .collect();
            let a = *self.pick(&adjs);
            deps.push(self.push(a, Upos::Adj));
        }
        let h = self.push(if plural { noun.pl } else { noun.sg }, Upos::Noun);
        for d in deps {
            self.attach(d, h);
        }
        let agr = Agr {
            plural,
            gender: noun.gender,
            class: noun.class,
        };
        // PP attached to the noun ("the book with the red cover" style)
        if depth < 2 && noun.class != Place && self.p(0.12) {
            let adp = *self.pick(LOCATIVE_ADPS);
            let c = self.push(adp, Upos::Adp);
            let (ph, _) = self.noun_phrase(&[Place], false, depth + 1);
            self.attach(c, ph);
            self.attach(ph, h);
        }
        // relative clause: "the dogs that the boy saw" / "the girl who runs"
        if allow_rel && depth == 0 && self.p(0.15) {
            self.relative_clause(h, agr);
        }
        (h, agr)
    }

    fn relative_clause(&mut self, noun: u32, agr: Agr) {
        let obj_verbs: Vec<&Verb> = VERBS
            .iter()
            .filter(|v| v.frame == Frame::Transitive && v.objects.contains(&agr.class))
            .collect();
        if obj_verbs.is_empty() || self.p(0.5) {
            // subject relative: the head noun is the subject of the relative predicate
            // ("the girl who runs", "the box that is red")
            let rel = self.push(if agr.class == Person { "who" } else { "that" }, Upos::Pron);
            let tense = self.tense();
            let v = self.verb_phrase(agr, tense, 1);
            self.attach(rel, v);
            self.attach(v, noun);
        } else {
            // object relative: "the dogs that the boy saw"
            let rel = self.push("that", Upos::Pron);
            let (sh, sagr) = self.noun_phrase(&[Person, Animal], false, 1);
            let tense = self.tense();
            let verb = *self.pick(&obj_verbs);
            let v = self.inflect(verb, sagr, tense);
            self.attach(sh, v);
            self.attach(rel, v);
            self.attach(v, noun);
        }
    }

    fn tense(&mut self) -> Tense {
        match self.rng.below(5) {
            0 | 1 => Tense::Present,
            2 | 3 => Tense::Past,
            _ => Tense::Future,
        }
    }

    /// Push the verb's (auxiliary +) form agreeing with `subj`; returns the verb's index.
    fn inflect(&mut self, verb: &Verb, subj: Agr, tense: Tense) -> u32 {
        match tense {
            Tense::Present => {
                let neg = self.p(0.1);
                if neg {
                    let aux = self.push(if subj.plural { "do" } else { "does" }, Upos::Aux);
                    let not = self.push("not", Upos::Part);
                    let v = self.push(verb.base, Upos::Verb);
                    self.attach(aux, v);
                    self.attach(not, v);
                    v
                } else {
                    self.push(if subj.plural { verb.base } else { verb.s3 }, Upos::Verb)
                }
            }
            Tense::Past => self.push(verb.past, Upos::Verb),
            Tense::Future => {
                let aux = self.push_any(&["will", "can"], Upos::Aux);
                let v = self.push(verb.base, Upos::Verb);
                self.attach(aux, v);
                v
            }
        }
    }

    /// A predicate for subject `subj`; returns the clause head (verb, or adjective for a
    /// copular clause).
    fn verb_phrase(&mut self, subj: Agr, tense: Tense, depth: usize) -> u32 {
        let animate = matches!(subj.class, Person | Animal);
        if !animate || self.p(0.12) {
            // copula: "is happy" / "were old"; the adjective heads the clause
            let cop = match tense {
                Tense::Present => {
                    if subj.plural {
                        "are"
                    } else {
                        "is"
                    }
                }
                Tense::Past => {
                    if subj.plural {
                        "were"
                    } else {
                        "was"
                    }
                }
                Tense::Future => "will",
            };
            let aux = self.push(cop, Upos::Aux);
            let be = (tense == Tense::Future).then(|| self.push("be", Upos::Aux));
            let adjs: Vec<&str> = ADJS
                .iter()
                .filter(|(_, cl)| cl.contains(&subj.class))
                .map(|(a, _)| *a)
                .collect();
            let a = *self.pick(&adjs);
            let h = self.push(a, Upos::Adj);
            self.attach(aux, h);
            if let Some(be) = be {
                self.attach(be, h);
            }
            return h;
        }
        let verb = self.pick(VERBS);
        let v = self.inflect(verb, subj, tense);
        match verb.frame {
            Frame::Intransitive => {}
            Frame::Transitive => {
                if depth == 0 && self.p(0.08) {
                    // reflexive, agreeing with the subject
                    let r = self.push(reflexive(subj), Upos::Pron);
                    self.attach(r, v);
                } else {
                    let (o, _) = self.noun_phrase(verb.objects, depth == 0, depth + 1);
                    self.attach(o, v);
                }
            }
            Frame::Ditransitive => {
                let (o, _) = self.noun_phrase(verb.objects, false, depth + 1);
                self.attach(o, v);
                let to = self.push("to", Upos::Adp);
                let (r, _) = self.noun_phrase(&[Person], false, depth + 1);
                self.attach(to, r);
                self.attach(r, v);
            }
        }
        if self.p(0.15) {
            let a = self.push_any(ADVS, Upos::Adv);
            self.attach(a, v);
        }
        if depth == 0 && self.p(0.2) {
            let adp = *self.pick(LOCATIVE_ADPS);
            let c = self.push(adp, Upos::Adp);
            let (ph, _) = self.noun_phrase(&[Place], false, depth + 1);
            self.attach(c, ph);
            self.attach(ph, v);
        }
        v
    }

    /// A clause whose subject is a pronoun referring back to `antecedent`.
    fn pronoun_clause(&mut self, antecedent: Agr, tense: Tense) -> u32 {
        let p = self.push(subject_pronoun(antecedent), Upos::Pron);
        let h = self.verb_phrase(antecedent, tense, 1);
        self.attach(p, h);
        h
    }

    fn sentence(&mut self) {
        let (subj, agr) =
            self.noun_phrase(&[Person, Animal, Readable, Food, Thing, Place], true, 0);
        let tense = self.tense();
        let root = self.verb_phrase(agr, tense, 0);
        self.attach(subj, root);
        match self.rng.below(10) {
            0..=2 => {
                // "... and/but he ..." — the pronoun agrees with the first subject
                let cc = self.push_any(&["and", "but"], Upos::Cconj);
                let t2 = if self.p(0.7) { tense } else { self.tense() };
                let h2 = self.pronoun_clause(agr, t2);
                self.attach(cc, h2);
                self.attach(h2, root);
            }
            3 | 4 => {
                let comma = self.p(0.5).then(|| self.push(",", Upos::Punct));
                let sc = self.push_any(SCONJS, Upos::Sconj);
                let t2 = self.tense();
                let h2 = self.pronoun_clause(agr, t2);
                self.attach(sc, h2);
                self.attach(h2, root);
                if let Some(c) = comma {
                    self.attach(c, h2);
                }
            }
            _ => {}
        }
        let stop = self.push(".", Upos::Punct);
        self.attach(stop, root);
    }
}

fn subject_pronoun(a: Agr) -> &'static str {
    match (a.plural, a.gender) {
        (true, _) => "they",
        (false, Masc) => "he",
        (false, Fem) => "she",
        (false, Neut) => "it",
    }
}

fn reflexive(a: Agr) -> &'static str {
    match (a.plural, a.gender) {
        (true, _) => "themselves",
        (false, Masc) => "himself",
        (false, Fem) => "herself",
        (false, Neut) => "itself",
    }
}

/// `n` sentences from the grammar, deterministic by `seed`.
pub fn generate(n: usize, seed: u64) -> Vec<Sentence> {
    let mut rng = Rng::new(seed ^ 0x5A5A_0A5A_1234_8765);
    (0..n)
        .map(|_| {
            let mut b = Builder {
                rng: &mut rng,
                forms: Vec::new(),
                tags: Vec::new(),
                heads: Vec::new(),
            };
            b.sentence();
            Sentence {
                words: b.forms,
                upos: Some(b.tags),
                heads: Some(b.heads),
            }
        })
        .collect()
}
