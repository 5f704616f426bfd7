//! What words mean beyond their characters, from two general Chinese resources built into the
//! binary (`assets/`, made by `tools/word_meanings.py`):
//! - word vectors: words used in like contexts sit close (损坏 ~ 破损, 快递 ~ 物流), so two
//!   questions worded differently can still be seen to ask one thing;
//! - synonym groups of the extended Tongyici Cilin (同义词词林): words that mean the same.
//!
//! Neither comes from the shop's knowledge base or from any benchmark: they are general
//! language, like jieba's dictionary.

use std::collections::HashMap;
use std::sync::LazyLock;

/// The resources, parsed once on first use (about 30 ms).
pub static MEANINGS: LazyLock<Meanings> = LazyLock::new(|| {
    Meanings::parse(
        include_bytes!("../assets/word_vectors.bin"),
        include_str!("../assets/synonyms.txt"),
    )
    .expect("the built-in word vectors are well formed (tested)")
});

const MAGIC: &[u8] = b"XVEC1";

/// Word vectors and synonym groups.
pub struct Meanings {
    dimensions: usize,
    /// Word → row of `values`.
    rows: HashMap<Box<str>, u32>,
    /// Unit vectors × 127, one row of `dimensions` a word.
    values: Vec<i8>,
    /// Word → the synonym groups it belongs to, sorted.
    groups: HashMap<Box<str>, Box<[u32]>>,
}

/// The gist of a text: the weighted mean of its words' vectors, stored compactly (a byte a
/// dimension) because every indexed question keeps one.
#[derive(Debug, Clone, PartialEq)]
pub struct Gist {
    values: Box<[i8]>,
    norm: f32,
}

impl Gist {
    /// Cosine of two gists, in [-1, 1].
    pub fn cosine(&self, other: &Gist) -> f32 {
        let dot: i32 = self
            .values
            .iter()
            .zip(other.values.iter())
            .map(|(a, b)| i32::from(*a) * i32::from(*b))
            .sum();
        dot as f32 / (self.norm * other.norm)
    }
}

impl Meanings {
    /// Parses the vector file (format in `tools/word_meanings.py`) and the synonym groups
    /// (one group a line, words separated by spaces).
    pub fn parse(vectors: &[u8], synonyms: &str) -> Result<Meanings, String> {
        let body = vectors
            .strip_prefix(MAGIC)
            .ok_or("word vectors: not an XVEC1 file")?;
        let (count, body) = body.split_at_checked(4).ok_or("word vectors: no count")?;
        let (dimensions, mut body) = body.split_at_checked(2).ok_or("word vectors: no size")?;
        let count = u32::from_le_bytes(count.try_into().expect("4 bytes"));
        let dimensions = usize::from(u16::from_le_bytes(dimensions.try_into().expect("2 bytes")));
        let mut rows = HashMap::with_capacity(count as usize);
        let mut values = Vec::with_capacity(count as usize * dimensions);
        for row in 0..count {
            let truncated = || format!("word vectors: word {row} of {count} is cut short");
            let (&length, rest) = body.split_first().ok_or_else(truncated)?;
            let (word, rest) = rest
                .split_at_checked(usize::from(length))
                .ok_or_else(truncated)?;
            let (vector, rest) = rest.split_at_checked(dimensions).ok_or_else(truncated)?;
            let word = std::str::from_utf8(word)
                .map_err(|_| format!("word vectors: word {row} is not UTF-8"))?;
            rows.insert(word.into(), row);
            values.extend(vector.iter().map(|b| *b as i8));
            body = rest;
        }
        if !body.is_empty() {
            return Err("word vectors: bytes left after the last word".into());
        }
        let mut groups: HashMap<Box<str>, Vec<u32>> = HashMap::new();
        for (group, line) in synonyms.lines().enumerate() {
            for word in line.split_whitespace() {
                groups.entry(word.into()).or_default().push(group as u32);
            }
        }
        Ok(Meanings {
            dimensions,
            rows,
            values,
            groups: groups
                .into_iter()
                .map(|(word, mut ids)| {
                    ids.sort_unstable();
                    ids.dedup();
                    (word, ids.into_boxed_slice())
                })
                .collect(),
        })
    }

    fn row(&self, word: &str) -> Option<&[i8]> {
        let row = *self.rows.get(word)? as usize * self.dimensions;
        Some(&self.values[row..row + self.dimensions])
    }

    /// Adds a word's vector to `sum`; for a word the table lacks (花呗, a typo), the sum of
    /// its characters' vectors, so a new compound still lands near its parts. False when
    /// neither the word nor any of its characters has one.
    fn add_vector(&self, word: &str, sum: &mut [f32]) -> bool {
        let mut add = |row: &[i8]| {
            for (s, v) in sum.iter_mut().zip(row) {
                *s += f32::from(*v);
            }
        };
        if let Some(row) = self.row(word) {
            add(row);
            return true;
        }
        let mut any = false;
        let mut buffer = [0u8; 4];
        for c in word.chars() {
            if let Some(row) = self.row(c.encode_utf8(&mut buffer)) {
                add(row);
                any = true;
            }
        }
        any
    }

    /// The gist of a text from its words and their weights: the weighted sum of the words'
    /// unit vectors; `None` when no word has a vector.
    pub fn gist<'a>(&self, words: impl IntoIterator<Item = (&'a str, f32)>) -> Option<Gist> {
        let mut sum = vec![0.0f32; self.dimensions];
        let mut word = vec![0.0f32; self.dimensions];
        let mut any = false;
        for (text, weight) in words {
            word.fill(0.0);
            if self.add_vector(text, &mut word) && normalize(&mut word) {
                any = true;
                for (s, v) in sum.iter_mut().zip(&word) {
                    *s += weight * v;
                }
            }
        }
        if !any || !normalize(&mut sum) {
            return None;
        }
        let values: Box<[i8]> = sum.iter().map(|v| (v * 127.0).round() as i8).collect();
        let norm = values
            .iter()
            .map(|v| f32::from(*v).powi(2))
            .sum::<f32>()
            .sqrt()
            .max(1.0);
        Some(Gist { values, norm })
    }

    /// The synonym groups a word belongs to, sorted (empty for most words).
    pub fn synonym_groups(&self, word: &str) -> &[u32] {
        self.groups.get(word).map_or(&[], |groups| groups)
    }
}

/// Scales to unit length; false for a zero vector.
fn normalize(vector: &mut [f32]) -> bool {
    let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm <= f32::EPSILON {
        return false;
    }
    vector.iter_mut().for_each(|v| *v /= norm);
    true
}

/// Whether two sorted group lists share a group.
pub fn share_group(a: &[u32], b: &[u32]) -> bool {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => return true,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosine(a: &str, b: &str) -> f32 {
        let gist = |w: &str| MEANINGS.gist([(w, 1.0)]).expect("has a vector");
        gist(a).cosine(&gist(b))
    }

    #[test]
    fn built_in_resources_parse_and_know_common_words() {
        assert!(MEANINGS.rows.len() > 50_000, "{}", MEANINGS.rows.len());
        assert!(MEANINGS.row("发货").is_some());
        assert!(!MEANINGS.synonym_groups("如何").is_empty());
    }

    #[test]
    fn related_words_sit_closer_than_unrelated_ones() {
        assert!(cosine("退款", "退货") > cosine("退款", "颜色") + 0.2);
        assert!(cosine("快递", "物流") > cosine("快递", "尺码") + 0.2);
    }

    #[test]
    fn an_unknown_compound_is_read_from_its_characters() {
        assert!(MEANINGS.row("花呗").is_none());
        assert!(MEANINGS.gist([("花呗", 1.0)]).is_some());
        assert!(MEANINGS.gist([("☃", 1.0)]).is_none());
    }

    #[test]
    fn synonyms_share_a_group_and_others_do_not() {
        let groups = |w| MEANINGS.synonym_groups(w);
        assert!(share_group(groups("如何"), groups("怎样")));
        assert!(!share_group(groups("如何"), groups("退款")));
    }

    #[test]
    fn malformed_vector_files_are_refused_not_misread() {
        assert!(Meanings::parse(b"", "").is_err());
        assert!(Meanings::parse(b"XVEC1\x01\x00\x00\x00\x02\x00\x02ab\x01", "").is_err());
        let one = Meanings::parse(b"XVEC1\x01\x00\x00\x00\x02\x00\x02ab\x01\x02", "a b\n")
            .expect("well formed");
        assert_eq!(one.row("ab"), Some(&[1i8, 2][..]));
        assert!(share_group(
            one.synonym_groups("a"),
            one.synonym_groups("b")
        ));
    }
}
