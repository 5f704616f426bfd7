//! The shop's product catalog (`knowledge/catalog.toml`) and the lookups product-aware answers
//! need: which product a question names, which colour and size, how many are in stock.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::knowledge::{Diagnostic, Location};

/// A colour in both languages.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Color {
    pub zh: String,
    pub en: String,
}

/// One row of a size chart: which buyer a size fits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizeRow {
    pub size: String,
    pub fits: String,
    pub fits_en: String,
}

/// One product of the shop.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Product {
    pub id: String,
    pub name: String,
    pub name_en: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    pub material: String,
    pub material_en: String,
    /// Listed price in yuan.
    pub price: f64,
    pub free_shipping: bool,
    /// Made after payment (handmade): ships within 48 hours of payment, has no stock.
    pub made_to_order: bool,
    #[serde(default)]
    pub colors: Vec<Color>,
    #[serde(default)]
    pub sizes: Vec<String>,
    #[serde(default)]
    pub size_chart: Vec<SizeRow>,
    /// Units in stock per variant, keyed `"colour/size"`, or `"colour"` for items without sizes.
    #[serde(default)]
    pub stock: BTreeMap<String, u32>,
}

/// A colour and/or size a buyer named.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Variant {
    /// Index into the product's `colors`.
    pub color: Option<String>,
    pub size: Option<String>,
}

impl Product {
    /// Stock of an exact variant, if the catalog lists it.
    pub fn stock_of(&self, color: &str, size: Option<&str>) -> Option<u32> {
        let key = match size {
            Some(size) => format!("{color}/{size}"),
            None => color.to_string(),
        };
        self.stock.get(&key).copied()
    }

    /// The colour (Chinese name) and size named in `normalized` text that this product has.
    pub fn variant_in(&self, normalized: &str) -> Variant {
        let color = self
            .colors
            .iter()
            .find(|c| mentions_color(normalized, c))
            .map(|c| c.zh.clone());
        let words = ascii_words(normalized);
        let size = self
            .sizes
            .iter()
            .find(|s| words.iter().any(|w| w.eq_ignore_ascii_case(s)))
            .cloned();
        Variant { color, size }
    }

    /// The English name of a Chinese colour name.
    pub fn color_en<'a>(&'a self, zh: &'a str) -> &'a str {
        self.colors
            .iter()
            .find(|c| c.zh == zh)
            .map(|c| c.en.as_str())
            .unwrap_or(zh)
    }
}

/// The whole catalog.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    #[serde(default)]
    pub product: Vec<Product>,
}

/// Stands product names, colours, sizes and numbers in for placeholders, so the matcher
/// reads "这款羊毛鞋多久发货" and "这款T恤多久发货" alike and an example written about one
/// product serves them all. Applied to example questions and buyer questions alike.
#[derive(Debug, Clone, Default)]
pub struct Masker {
    /// (normalised phrase, placeholder), longest phrase first.
    phrases: Vec<(String, &'static str)>,
}

/// What a product name becomes.
const PRODUCT_PLACEHOLDER: &str = "商品";
/// What a number becomes.
const NUMBER_PLACEHOLDER: &str = "0";
const COLOR_PLACEHOLDER: &str = "颜色";
const SIZE_PLACEHOLDER: &str = "尺码";

impl Masker {
    /// Collects every product name, alias, colour and size of `catalog`, normalised by `normalize`.
    pub fn new(catalog: &Catalog, normalize: impl Fn(&str) -> String) -> Masker {
        let mut phrases = Vec::new();
        for product in &catalog.product {
            for name in product
                .aliases
                .iter()
                .chain([&product.name, &product.name_en])
            {
                phrases.push((normalize(name), PRODUCT_PLACEHOLDER));
            }
            for color in &product.colors {
                phrases.push((normalize(&color.zh), COLOR_PLACEHOLDER));
                phrases.push((normalize(&color.en), COLOR_PLACEHOLDER));
            }
            for size in &product.sizes {
                phrases.push((normalize(size), SIZE_PLACEHOLDER));
            }
        }
        phrases.retain(|(phrase, _)| !phrase.is_empty());
        phrases.sort_by(|a, b| {
            b.0.chars()
                .count()
                .cmp(&a.0.chars().count())
                .then(a.0.cmp(&b.0))
        });
        phrases.dedup_by(|a, b| a.0 == b.0);
        Masker { phrases }
    }

    /// True when a masked text says nothing but placeholders ("0", "商品"): such a text is
    /// no evidence of any topic on its own.
    pub fn only_placeholders(masked: &str) -> bool {
        let placeholders = [
            PRODUCT_PLACEHOLDER,
            COLOR_PLACEHOLDER,
            SIZE_PLACEHOLDER,
            NUMBER_PLACEHOLDER,
        ];
        masked
            .split_whitespace()
            .all(|word| placeholders.contains(&word))
    }

    /// Replaces what the catalog names; numbers become 0.
    pub fn mask(&self, normalized: &str) -> String {
        let mut text = normalized.to_string();
        for (phrase, placeholder) in &self.phrases {
            // Cheap first test: most phrases' first character is nowhere in a short question.
            let first = phrase.chars().next().unwrap_or(' ');
            if text.contains(first) {
                text = crate::normalize::replace_phrase(&text, phrase, placeholder);
            }
        }
        let mut out = String::with_capacity(text.len());
        let mut in_number = false;
        for c in text.chars() {
            if c.is_ascii_digit() {
                if !in_number {
                    out.push(' ');
                    out.push_str(NUMBER_PLACEHOLDER);
                    out.push(' ');
                }
                in_number = true;
            } else {
                in_number = false;
                out.push(c);
            }
        }
        out.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

/// 红色 is named by 红色 or 红; red by the English word.
fn mentions_color(normalized: &str, color: &Color) -> bool {
    let short = color.zh.trim_end_matches('色');
    (!short.is_empty() && normalized.contains(short))
        || ascii_words(normalized)
            .iter()
            .any(|w| w.eq_ignore_ascii_case(&color.en))
}

/// Runs of ASCII letters and digits: where sizes (M, XL, 38) and English words live.
pub fn ascii_words(text: &str) -> Vec<&str> {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect()
}

/// Parses `catalog.toml` and checks each product's variants are consistent.
pub fn parse_str(path: &Path, text: &str) -> Result<Catalog, Vec<Diagnostic>> {
    let here = |message: String| Diagnostic {
        location: Location {
            file: path.to_path_buf(),
            line: 0,
        },
        message,
    };
    let catalog: Catalog = crate::knowledge::parse_toml(path, text).map_err(|d| vec![d])?;
    let mut problems = Vec::new();
    for product in &catalog.product {
        for key in product.stock.keys() {
            let mut parts = key.splitn(2, '/');
            let color = parts.next().unwrap_or_default();
            let size = parts.next();
            let color_known = product.colors.iter().any(|c| c.zh == color);
            let size_known = size.is_none_or(|s| product.sizes.iter().any(|x| x == s));
            if !color_known || !size_known {
                problems.push(here(format!(
                    "product \"{}\": stock key \"{key}\" names an unknown colour or size",
                    product.id
                )));
            }
        }
    }
    if problems.is_empty() {
        Ok(catalog)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
[[product]]
id = "tshirt"
name = "纯棉T恤"
name_en = "cotton T-shirt"
material = "棉"
material_en = "cotton"
price = 99.0
free_shipping = true
made_to_order = false
colors = [{ zh = "红色", en = "red" }, { zh = "白色", en = "white" }]
sizes = ["M", "L"]
stock = { "红色/M" = 3, "白色/L" = 0 }
"#;

    #[test]
    fn a_question_names_colour_and_size() {
        let catalog = parse_str(Path::new("catalog.toml"), SAMPLE).unwrap();
        let tshirt = &catalog.product[0];
        let variant = tshirt.variant_in("红色m码还有");
        assert_eq!(variant.color.as_deref(), Some("红色"));
        assert_eq!(variant.size.as_deref(), Some("M"));
        assert_eq!(tshirt.stock_of("红色", Some("M")), Some(3));
        assert_eq!(
            tshirt.variant_in("do you have white in l").color.as_deref(),
            Some("白色")
        );
    }

    #[test]
    fn a_stock_key_for_a_size_the_product_lacks_is_reported() {
        let broken = SAMPLE.replace("\"白色/L\"", "\"白色/XXL\"");
        let problems = parse_str(Path::new("catalog.toml"), &broken).unwrap_err();
        assert!(problems[0].message.contains("白色/XXL"), "{problems:?}");
    }
}
