//! Print a few synthetic sentences in CoNLL-U-like columns (id, form, UPOS, head).
fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    for s in asa_lth::data::synthetic::generate(n, 1) {
        let (tags, heads) = (s.upos.unwrap_or_default(), s.heads.unwrap_or_default());
        for (i, w) in s.words.iter().enumerate() {
            println!("{}\t{w}\t{}\t{}", i + 1, tags[i], heads[i]);
        }
        println!();
    }
}
