//! The knowledge base: entries (topic, examples, approved answers), the lexicon, the product
//! catalog and the reply templates, read from `knowledge/`.
//!
//! `load_dir` (with its helpers `toml_files` and `read_text`) is the only code here that
//! touches disk; `parse_*` take `&str` so tests can feed text. Problems are collected as
//! `Diagnostic`s (`file:line: message`), never stopping at the first.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::catalog::Catalog;
use crate::normalize::Lexicon;
use crate::phrasing::{self, PhrasingRules};
use crate::shop::Shop;

/// Entries the code routes by id: a request for a person and a complaint go to a person
/// whatever else the message says. Every other topic is the shop's own choice.
pub const REQUIRED_IDS: &[&str] = &["human", "complaint"];

/// Reply templates the conversation sends whatever the shop sells, and therefore requires.
pub const REQUIRED_TEMPLATES: &[&str] = &[
    "clarify",
    "clarify_choice",
    "handoff",
    "empty",
    "too_long",
    "angry",
    "repeated",
    "flow_stuck",
    "flow_left",
    "after_hours",
    "waiting_ack",
    "still_waiting",
    "handoff_cancelled",
    "attachment_received",
    "rating_request",
    "rating_thanks",
    "released",
    "welcome",
    "message_kind_unsupported",
    "try_again",
];

/// Templates of product-aware answers, filled from the catalog (a product's dispatch, stock,
/// postage, price, material, sizes and a size from the buyer's measurements). A shop that
/// writes them all gets those answers for its
/// `dispatch_time`, `stock_check`, `restock`, `free_shipping`, `price`, `material` and
/// `size_advice` entries; a shop that writes none answers every question from its entries.
pub const PRODUCT_TEMPLATES: &[&str] = &[
    "dispatch_made_to_order",
    "dispatch_in_stock",
    "dispatch_no_stock",
    "stock_made_to_order",
    "stock_in",
    "stock_out",
    "stock_out_all",
    "stock_list",
    "stock_across",
    "stock_line_in",
    "stock_line_out",
    "free_shipping_yes",
    "free_shipping_no",
    "price",
    "material",
    "size_one_size",
    "size_chart",
    "size_recommend",
];

/// Fewest example questions an entry may have.
pub const MIN_EXAMPLES: usize = 8;

/// Largest knowledge file read, so a stray binary dump is refused rather than parsed.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// A stable entry id (`invoice`, `damaged_item`): lower-case ASCII, digits and `_`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, Deserialize)]
#[serde(transparent)]
pub struct EntryId(String);

impl EntryId {
    /// Parses an id, refusing anything but `[a-z0-9_]+`.
    pub fn parse(text: &str) -> Option<EntryId> {
        let valid = !text.is_empty()
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        valid.then(|| EntryId(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the bot does when an entry matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Send the approved answer.
    #[default]
    Answer,
    /// An after-sales case: start its dialog flow (until flows exist, send the first step).
    Dialog,
    /// Never answered by the bot: hand the chat to a person at once.
    Handoff,
}

/// One topic of the knowledge base.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: EntryId,
    pub title: String,
    pub title_en: String,
    pub policy: String,
    pub source: String,
    pub action: Action,
    pub examples: Vec<String>,
    /// The 1-based line of each example question, in `examples` order (the entry's line when
    /// an example's own is unknown).
    pub example_lines: Vec<usize>,
    pub keywords: Vec<String>,
    /// Phrases that select this entry wherever they appear (handoff entries).
    pub triggers: Vec<String>,
    pub answer: String,
    pub answer_en: String,
    /// Where the entry was written, for diagnostics.
    pub location: Location,
}

/// A file and 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
}

/// A problem found in the knowledge base, printed as `file:line: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub location: Location,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}",
            self.location.file.display(),
            self.location.line,
            self.message
        )
    }
}

/// A Chinese and an English text.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    pub zh: String,
    pub en: String,
}

/// Everything under `knowledge/`.
#[derive(Debug, Clone, Default)]
pub struct KnowledgeBase {
    pub entries: Vec<Entry>,
    pub lexicon: Lexicon,
    pub catalog: Catalog,
    /// Bot messages that are not entry answers (clarify, handoff, product answers …).
    pub templates: BTreeMap<String, Template>,
    /// The approved-phrasing rules (`phrasing.toml`).
    pub phrasing: PhrasingRules,
    /// Where the catalog was read from, for diagnostics.
    pub catalog_path: PathBuf,
    /// The shop's own rules (`shop.toml`): its hours and the values answers refer to.
    pub shop: Shop,
}

impl Entry {
    /// Where example question `index` was written (the entry's own location if unknown).
    pub fn example_location(&self, index: usize) -> Location {
        Location {
            file: self.location.file.clone(),
            line: self
                .example_lines
                .get(index)
                .copied()
                .unwrap_or(self.location.line),
        }
    }
}

impl KnowledgeBase {
    pub fn entry(&self, id: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.id.as_str() == id)
    }

    /// True when the shop wrote the product-aware templates (`PRODUCT_TEMPLATES`).
    pub fn answers_from_catalog(&self) -> bool {
        PRODUCT_TEMPLATES
            .iter()
            .all(|name| self.templates.contains_key(*name))
    }

    pub fn template(&self, name: &str) -> &Template {
        // Required templates are validated at load, so a miss is a programming error.
        self.templates
            .get(name)
            .unwrap_or_else(|| panic!("template {name} missing from a validated knowledge base"))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryFile {
    #[serde(default)]
    entry: Vec<RawEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    id: toml::Spanned<String>,
    title: String,
    title_en: String,
    policy: String,
    source: String,
    #[serde(default)]
    action: Action,
    examples: Vec<toml::Spanned<String>>,
    #[serde(default)]
    keywords: Vec<String>,
    #[serde(default)]
    triggers: Vec<String>,
    answer: String,
    answer_en: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateFile {
    #[serde(default)]
    template: BTreeMap<String, Template>,
}

/// Reads every `*.toml` in `dir`: `lexicon.toml`, `catalog.toml`, `replies.toml` by name, the
/// rest as entry files. Returns what could be read and every problem found.
pub fn load_dir(dir: &Path) -> (KnowledgeBase, Vec<Diagnostic>) {
    let mut knowledge_base = KnowledgeBase::default();
    let mut diagnostics = Vec::new();
    let paths = match toml_files(dir) {
        Ok(paths) => paths,
        Err(error) => {
            diagnostics.push(at(dir, 0, format!("cannot read the folder: {error}")));
            return (knowledge_base, diagnostics);
        }
    };
    let mut template_lines: BTreeMap<String, Location> = BTreeMap::new();
    for path in paths {
        let text = match read_text(&path) {
            Ok(text) => text,
            Err(message) => {
                diagnostics.push(at(&path, 0, message));
                continue;
            }
        };
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        match name {
            "lexicon.toml" => match parse_toml::<Lexicon>(&path, &text) {
                Ok(lexicon) => knowledge_base.lexicon = lexicon,
                Err(d) => diagnostics.push(d),
            },
            "catalog.toml" => match crate::catalog::parse_str(&path, &text) {
                Ok(catalog) => {
                    knowledge_base.catalog = catalog;
                    knowledge_base.catalog_path = path.clone();
                }
                Err(d) => diagnostics.extend(d),
            },
            "replies.toml" => match parse_toml::<TemplateFile>(&path, &text) {
                Ok(file) => {
                    for name in file.template.keys() {
                        let line = text
                            .find(&format!("[template.{name}]"))
                            .map(|at| line_of(&text, at))
                            .unwrap_or(0);
                        template_lines.insert(
                            name.clone(),
                            Location {
                                file: path.clone(),
                                line,
                            },
                        );
                    }
                    knowledge_base.templates.extend(file.template)
                }
                Err(d) => diagnostics.push(d),
            },
            "shop.toml" => match parse_toml::<Shop>(&path, &text) {
                Ok(shop) => {
                    if let Some(Err(problem)) = shop.service_hours() {
                        diagnostics.push(at(&path, 0, format!("[hours]: {problem}")));
                    }
                    knowledge_base.shop = shop;
                }
                Err(d) => diagnostics.push(d),
            },
            "phrasing.toml" => match parse_toml::<PhrasingRules>(&path, &text) {
                Ok(rules) => knowledge_base.phrasing = rules,
                Err(d) => diagnostics.push(d),
            },
            _ => match parse_str(&path, &text) {
                Ok(entries) => knowledge_base.entries.extend(entries),
                Err(d) => diagnostics.push(d),
            },
        }
    }
    diagnostics.extend(fill_shop_values(&mut knowledge_base, &template_lines));
    diagnostics.extend(validate(&knowledge_base, dir));
    diagnostics.extend(check_phrasing(&knowledge_base, &template_lines));
    (knowledge_base, diagnostics)
}

/// Writes the shop's values (`{shop.NAME}`) into every answer and template, so what is checked
/// and sent is the text the buyer reads; a name `shop.toml` lacks is a problem at its entry or
/// template.
fn fill_shop_values(
    knowledge_base: &mut KnowledgeBase,
    template_lines: &BTreeMap<String, Location>,
) -> Vec<Diagnostic> {
    let shop = knowledge_base.shop.clone();
    let mut diagnostics = Vec::new();
    let mut fill = |text: &mut String, english: bool, location: &Location, whose: &str| match shop
        .fill(text, english)
    {
        Ok(filled) => *text = filled,
        Err(unknown) => diagnostics.push(Diagnostic {
            location: location.clone(),
            message: format!(
                "{whose} refers to {} that shop.toml does not define",
                unknown
                    .iter()
                    .map(|name| format!("{{shop.{name}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    };
    for entry in &mut knowledge_base.entries {
        let whose = format!("entry \"{}\"", entry.id);
        fill(&mut entry.answer, false, &entry.location, &whose);
        fill(&mut entry.answer_en, true, &entry.location, &whose);
        fill(&mut entry.policy, true, &entry.location, &whose);
    }
    for (name, template) in &mut knowledge_base.templates {
        let location = template_lines.get(name).cloned().unwrap_or_default();
        let whose = format!("template \"{name}\"");
        fill(&mut template.zh, false, &location, &whose);
        fill(&mut template.en, true, &location, &whose);
    }
    diagnostics
}

/// The `*.toml` files directly in `dir`, sorted by path, so every reader sees one order.
/// Unreadable directory entries are skipped; an unreadable folder is the caller's to report.
pub(crate) fn toml_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    Ok(paths)
}

/// Reads a file as UTF-8 text, refusing huge, binary and non-UTF-8 files with a clear message.
pub(crate) fn read_text(path: &Path) -> Result<String, String> {
    let size = std::fs::metadata(path)
        .map_err(|e| format!("cannot read: {e}"))?
        .len();
    if size > MAX_FILE_BYTES {
        return Err(format!(
            "file is {size} bytes, larger than the {MAX_FILE_BYTES}-byte limit for a knowledge file"
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    if bytes.contains(&0) {
        return Err("file is binary (contains NUL bytes), expected TOML text".into());
    }
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "file is not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })
}

/// Parses a TOML file, reporting a syntax or schema error at its line.
pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
) -> Result<T, Diagnostic> {
    toml::from_str(text).map_err(|error| {
        let line = error.span().map(|s| line_of(text, s.start)).unwrap_or(0);
        at(path, line, error.message().to_string())
    })
}

/// Parses one entry file.
pub fn parse_str(path: &Path, text: &str) -> Result<Vec<Entry>, Diagnostic> {
    let file: EntryFile = parse_toml(path, text)?;
    // Offsets of line starts, so each span's line is a binary search (counting newlines from
    // the top for every example is quadratic in a big file).
    let starts: Vec<usize> = std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    let line_at = |offset: usize| starts.partition_point(|&start| start <= offset);
    let entries = file
        .entry
        .into_iter()
        .map(|raw| {
            let line = line_at(raw.id.span().start);
            let id_text = raw.id.into_inner();
            let example_lines = raw
                .examples
                .iter()
                .map(|e| line_at(e.span().start))
                .collect();
            Entry {
                // An invalid id is reported by `validate`; keep the entry so its other problems show.
                id: EntryId::parse(&id_text).unwrap_or(EntryId(id_text)),
                title: raw.title,
                title_en: raw.title_en,
                policy: raw.policy,
                source: raw.source,
                action: raw.action,
                examples: raw.examples.into_iter().map(|e| e.into_inner()).collect(),
                example_lines,
                keywords: raw.keywords,
                triggers: raw.triggers,
                answer: raw.answer,
                answer_en: raw.answer_en,
                location: Location {
                    file: path.to_path_buf(),
                    line,
                },
            }
        })
        .collect();
    Ok(entries)
}

/// Checks what a single file can't: ids unique and present, answers and examples filled in,
/// templates present.
pub fn validate(knowledge_base: &KnowledgeBase, dir: &Path) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    let mut seen = HashSet::new();
    for entry in &knowledge_base.entries {
        let here = |message: String| Diagnostic {
            location: entry.location.clone(),
            message,
        };
        let id = entry.id.as_str();
        if EntryId::parse(id).is_none() {
            diagnostics.push(here(format!(
                "id \"{id}\" must be lower-case letters, digits and _"
            )));
        }
        if !seen.insert(id) {
            diagnostics.push(here(format!("duplicate id \"{id}\"")));
        }
        if entry.answer.trim().is_empty() || entry.answer_en.trim().is_empty() {
            diagnostics.push(here(format!(
                "entry \"{id}\" needs both answer and answer_en"
            )));
        }
        if entry.examples.len() < MIN_EXAMPLES {
            diagnostics.push(here(format!(
                "entry \"{id}\" has {} example questions, needs at least {MIN_EXAMPLES}",
                entry.examples.len()
            )));
        }
        if entry.examples.iter().any(|e| e.trim().is_empty()) {
            diagnostics.push(here(format!(
                "entry \"{id}\" has an empty example question"
            )));
        }
        if !entry.triggers.is_empty() && entry.action != Action::Handoff {
            diagnostics.push(here(format!(
                "entry \"{id}\": triggers are for handoff entries only"
            )));
        }
    }
    for required in REQUIRED_IDS {
        if !seen.contains(required) {
            diagnostics.push(at(
                dir,
                0,
                format!("required entry \"{required}\" is missing"),
            ));
        }
    }
    for required in REQUIRED_TEMPLATES {
        if !knowledge_base.templates.contains_key(*required) {
            let file = dir.join("replies.toml");
            diagnostics.push(at(
                &file,
                0,
                format!("required template \"{required}\" is missing"),
            ));
        }
    }
    let missing: Vec<&str> = PRODUCT_TEMPLATES
        .iter()
        .copied()
        .filter(|name| !knowledge_base.templates.contains_key(*name))
        .collect();
    if !missing.is_empty() && missing.len() < PRODUCT_TEMPLATES.len() {
        diagnostics.push(at(
            &dir.join("replies.toml"),
            0,
            format!(
                "product-aware answers need every product template; missing: {}",
                missing.join(", ")
            ),
        ));
    }
    diagnostics
}

/// Every answer and template against the phrasing rules. Templates are fragments of what is
/// sent (slots unfilled, pieces of a list), so only the forbidden phrases apply to them; a
/// template without slots is sent whole and must pass every rule. Rendered replies are checked
/// again when sent.
fn check_phrasing(
    knowledge_base: &KnowledgeBase,
    template_lines: &BTreeMap<String, Location>,
) -> Vec<Diagnostic> {
    let rules = &knowledge_base.phrasing;
    let mut diagnostics = Vec::new();
    let mut report = |location: &Location, what: String, violations: Vec<phrasing::Violation>| {
        for violation in violations {
            diagnostics.push(Diagnostic {
                location: location.clone(),
                message: format!("{what}: {violation}"),
            });
        }
    };
    for entry in &knowledge_base.entries {
        for (field, text) in [("answer", &entry.answer), ("answer_en", &entry.answer_en)] {
            report(
                &entry.location,
                format!("entry \"{}\" {field}", entry.id),
                phrasing::check(rules, text),
            );
        }
        // Titles are offered as choices when the bot asks which topic was meant.
        for (field, text) in [("title", &entry.title), ("title_en", &entry.title_en)] {
            report(
                &entry.location,
                format!("entry \"{}\" {field}", entry.id),
                phrasing::check_fragment(rules, text),
            );
        }
    }
    // Catalog values are filled into product answers.
    let catalog_file = Location {
        file: knowledge_base.catalog_path.clone(),
        line: 0,
    };
    for product in &knowledge_base.catalog.product {
        let rows = product
            .size_chart
            .iter()
            .flat_map(|r| [&r.fits, &r.fits_en]);
        let colors = product.colors.iter().flat_map(|c| [&c.zh, &c.en]);
        for text in [
            &product.name,
            &product.name_en,
            &product.material,
            &product.material_en,
        ]
        .into_iter()
        .chain(rows)
        .chain(colors)
        {
            report(
                &catalog_file,
                format!("product \"{}\"", product.id),
                phrasing::check_fragment(rules, text),
            );
        }
    }
    for (name, template) in &knowledge_base.templates {
        let location = template_lines.get(name).cloned().unwrap_or_default();
        for (field, text) in [("zh", &template.zh), ("en", &template.en)] {
            // A template without slots is sent as it is, so it must pass every rule.
            let violations = if !text.contains('{') {
                phrasing::check(rules, text)
            } else {
                phrasing::check_fragment(rules, text)
            };
            report(
                &location,
                format!("template \"{name}\" {field}"),
                violations,
            );
        }
    }
    diagnostics
}

pub(crate) fn at(path: &Path, line: usize, message: String) -> Diagnostic {
    Diagnostic {
        location: Location {
            file: path.to_path_buf(),
            line,
        },
        message,
    }
}

/// 1-based line of a byte offset.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}

/// The entry file `text` with `example` added as the first example of entry `id`, keeping
/// every comment and line as written; None when the entry or its `examples` is not found.
pub fn add_example(text: &str, id: &str, example: &str) -> Option<String> {
    let id_line = format!("id = {}", toml::Value::String(id.to_string()));
    let start = text
        .find(&format!("\n{id_line}\n"))
        .map(|i| i + 1)
        .or_else(|| text.starts_with(&format!("{id_line}\n")).then_some(0))?;
    let next_entry = text[start..]
        .find("[[entry]]")
        .map_or(text.len(), |i| start + i);
    let examples = text[start..next_entry].find("examples = [")? + start;
    let line_end = text[examples..].find('\n')? + examples + 1;
    // Only the one-example-per-line layout the shipped files use is edited in place.
    if text[examples..line_end].trim() != "examples = [" {
        return None;
    }
    let quoted = toml::Value::String(example.to_string()).to_string();
    Some(format!(
        "{}  {quoted},\n{}",
        &text[..line_end],
        &text[line_end..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(examples: &str, expect_lines: &[usize]) {
        let text = format!(
            "[[entry]]\nid = \"x\"\ntitle = \"t\"\ntitle_en = \"t\"\npolicy = \"p\"\nsource = \"s\"\n\
             examples = {examples}\nanswer = \"a\"\nanswer_en = \"a\"\n"
        );
        let entries = parse_str(Path::new("x.toml"), &text).unwrap();
        assert_eq!(entries[0].example_lines, expect_lines);
        for (index, line) in expect_lines.iter().enumerate() {
            assert_eq!(entries[0].example_location(index).line, *line);
        }
    }

    #[test]
    fn each_example_question_knows_its_line() {
        check("[\n  \"能开发票吗\",\n  \"发票?\",\n]", &[8, 9]);
        check("[\"a\", \"b\",\n\"c\"]", &[7, 7, 8]);
    }

    #[test]
    fn an_example_is_added_to_its_entry_keeping_the_file_as_written() {
        let text = "# comment\n[[entry]]\nid = \"a\"\nexamples = [\n  \"one\",\n]\n\n[[entry]]\nid = \"b\"\nexamples = [\n  \"two\",\n]\n";
        let edited = add_example(text, "b", "say \"hi\"").unwrap();
        assert_eq!(
            edited,
            text.replace("  \"two\",", "  'say \"hi\"',\n  \"two\",")
        );
        assert!(add_example(text, "c", "x").is_none());
        let parsed: toml::Value = toml::from_str(&edited).unwrap();
        assert_eq!(
            parsed["entry"][1]["examples"][0].as_str(),
            Some("say \"hi\"")
        );
    }
}
