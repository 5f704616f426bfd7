//! Renders what the bot says: an entry's approved answer, a product-aware answer filled in
//! from the catalog, the clarify question, the handoff notice. Every text comes from a
//! template in `knowledge/`; this module only chooses one and fills its `{slots}`.

use crate::catalog::{Catalog, Product, Variant};
use crate::knowledge::{Entry, KnowledgeBase};
use crate::normalize::Lang;
use crate::sizing;

/// Picks the text for `lang`.
pub fn pick<'a>(zh: &'a str, en: &'a str, lang: Lang) -> &'a str {
    match lang {
        Lang::Zh => zh,
        Lang::En => en,
    }
}

/// Fills `{name}` slots; unknown slots stay as they are (and fail the phrasing check).
pub fn fill(template: &str, slots: &[(&str, String)]) -> String {
    let mut text = template.to_string();
    for (name, value) in slots {
        text = text.replace(&format!("{{{name}}}"), value);
    }
    text
}

/// Renders a named template from `replies.toml`.
pub fn template(
    knowledge_base: &KnowledgeBase,
    name: &str,
    lang: Lang,
    slots: &[(&str, String)],
) -> String {
    let template = knowledge_base.template(name);
    fill(pick(&template.zh, &template.en, lang), slots)
}

/// The approved answer of an entry.
pub fn answer(entry: &Entry, lang: Lang) -> String {
    pick(&entry.answer, &entry.answer_en, lang)
        .trim()
        .to_string()
}

/// "Which of these did you mean?" with numbered topic titles.
pub fn clarify(knowledge_base: &KnowledgeBase, choices: &[&Entry], lang: Lang) -> String {
    let lines: Vec<String> = choices
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let title = pick(&entry.title, &entry.title_en, lang).to_string();
            template(
                knowledge_base,
                "clarify_choice",
                lang,
                &[("n", (i + 1).to_string()), ("title", title)],
            )
        })
        .collect();
    template(
        knowledge_base,
        "clarify",
        lang,
        &[("choices", lines.join("\n"))],
    )
}

/// A product-aware answer for topics the catalog can answer better than the generic entry,
/// or `None` when the generic answer is the right one.
pub fn product_answer(
    knowledge_base: &KnowledgeBase,
    topic: &str,
    product: Option<&Product>,
    normalized: &str,
    lang: Lang,
) -> Option<String> {
    if !knowledge_base.answers_from_catalog() {
        return None;
    }
    let render =
        |name: &str, slots: &[(&str, String)]| Some(template(knowledge_base, name, lang, slots));
    let Some(product) = product else {
        return match topic {
            "stock_check" => {
                stock_across_catalog(knowledge_base, &knowledge_base.catalog, normalized, lang)
            }
            _ => None,
        };
    };
    let name = pick(&product.name, &product.name_en, lang).to_string();
    let variant = product.variant_in(normalized);
    let named = || {
        vec![
            ("name", name.clone()),
            ("variant", variant_text(product, &variant, lang)),
        ]
    };
    match topic {
        "dispatch_time" if product.made_to_order => render("dispatch_made_to_order", &named()),
        "dispatch_time" => {
            let in_stock = match (
                &variant.color,
                product.sizes.is_empty() || variant.size.is_some(),
            ) {
                (Some(color), true) => {
                    product
                        .stock_of(color, variant.size.as_deref())
                        .unwrap_or(0)
                        > 0
                }
                _ => product.stock.values().any(|&n| n > 0),
            };
            render(
                if in_stock {
                    "dispatch_in_stock"
                } else {
                    "dispatch_no_stock"
                },
                &named(),
            )
        }
        "stock_check" => stock_of_product(knowledge_base, product, &variant, lang),
        "free_shipping" => render(
            if product.free_shipping {
                "free_shipping_yes"
            } else {
                "free_shipping_no"
            },
            &named(),
        ),
        "price" => render(
            "price",
            &[
                ("name", name.clone()),
                ("price", format_price(product.price)),
            ],
        ),
        "material" => {
            let material = pick(&product.material, &product.material_en, lang).to_string();
            render(
                "material",
                &[("name", name.clone()), ("material", material)],
            )
        }
        "size_advice" if product.size_chart.is_empty() => render("size_one_size", &named()),
        "size_advice" => {
            match sizing::recommend(&product.size_chart, &sizing::measurements(normalized)) {
                Some(row) => render(
                    "size_recommend",
                    &[
                        ("name", name.clone()),
                        ("size", row.size.clone()),
                        ("fits", pick(&row.fits, &row.fits_en, lang).to_string()),
                    ],
                ),
                None => size_chart(knowledge_base, product, &name, lang),
            }
        }
        "restock" => restock(knowledge_base, product, &variant, lang),
        _ => None,
    }
}

/// The whole chart, and a request for what would pick a size from it.
fn size_chart(
    knowledge_base: &KnowledgeBase,
    product: &Product,
    name: &str,
    lang: Lang,
) -> Option<String> {
    let rows: Vec<String> = product
        .size_chart
        .iter()
        .map(|row| format!("{}: {}", row.size, pick(&row.fits, &row.fits_en, lang)))
        .collect();
    let separator = pick("；", "; ", lang);
    Some(template(
        knowledge_base,
        "size_chart",
        lang,
        &[("name", name.to_string()), ("chart", rows.join(separator))],
    ))
}

/// "保温杯什么时候补货": the variant asked for is back in stock, or the restock policy (the
/// entry's own answer) when it is not: a list of other variants answers another question.
fn restock(
    knowledge_base: &KnowledgeBase,
    product: &Product,
    variant: &Variant,
    lang: Lang,
) -> Option<String> {
    let complete = variant.color.is_some() && (product.sizes.is_empty() || variant.size.is_some());
    let color = variant.color.as_deref().filter(|_| complete)?;
    let count = product.stock_of(color, variant.size.as_deref())?;
    (count > 0).then(|| {
        template(
            knowledge_base,
            "stock_in",
            lang,
            &[
                (
                    "name",
                    pick(&product.name, &product.name_en, lang).to_string(),
                ),
                ("variant", variant_text(product, variant, lang)),
                ("count", count.to_string()),
            ],
        )
    })
}

fn stock_of_product(
    knowledge_base: &KnowledgeBase,
    product: &Product,
    variant: &Variant,
    lang: Lang,
) -> Option<String> {
    let name = pick(&product.name, &product.name_en, lang).to_string();
    let render = |name_of_template: &str, slots: &[(&str, String)]| {
        Some(template(knowledge_base, name_of_template, lang, slots))
    };
    if product.made_to_order {
        return render("stock_made_to_order", &[("name", name)]);
    }
    let complete = variant.color.is_some() && (product.sizes.is_empty() || variant.size.is_some());
    if let (true, Some(color)) = (complete, &variant.color) {
        let count = product
            .stock_of(color, variant.size.as_deref())
            .unwrap_or(0);
        let variant_name = variant_text(product, variant, lang);
        if count > 0 {
            return render(
                "stock_in",
                &[
                    ("name", name),
                    ("variant", variant_name),
                    ("count", count.to_string()),
                ],
            );
        }
        let others = available_variants(product, None, lang);
        if !others.is_empty() {
            return render(
                "stock_out",
                &[
                    ("name", name),
                    ("variant", variant_name),
                    ("available", others),
                ],
            );
        }
    }
    // A colour without its size ("红色还有吗"): that colour's sizes in stock, or that it is out.
    if let (false, Some(color)) = (complete, &variant.color) {
        let of_color = available_variants(product, Some(color), lang);
        let others = available_variants(product, None, lang);
        if !of_color.is_empty() {
            return render("stock_list", &[("name", name), ("available", of_color)]);
        }
        if !others.is_empty() {
            let variant_name = variant_text(product, variant, lang);
            return render(
                "stock_out",
                &[
                    ("name", name),
                    ("variant", variant_name),
                    ("available", others),
                ],
            );
        }
    }
    match available_variants(product, None, lang) {
        others if others.is_empty() => render("stock_out_all", &[("name", name)]),
        others => render("stock_list", &[("name", name), ("available", others)]),
    }
}

/// "红色M码还有吗" without a product: the stock of that variant in every product that has it.
fn stock_across_catalog(
    knowledge_base: &KnowledgeBase,
    catalog: &Catalog,
    normalized: &str,
    lang: Lang,
) -> Option<String> {
    let mut lines = Vec::new();
    let mut asked = None;
    for product in &catalog.product {
        let variant = product.variant_in(normalized);
        let (Some(color), Some(size)) = (&variant.color, &variant.size) else {
            continue;
        };
        let Some(count) = product.stock_of(color, Some(size)) else {
            continue;
        };
        asked.get_or_insert_with(|| variant_text(product, &variant, lang));
        let name = pick(&product.name, &product.name_en, lang).to_string();
        let line = if count > 0 {
            "stock_line_in"
        } else {
            "stock_line_out"
        };
        lines.push(template(
            knowledge_base,
            line,
            lang,
            &[("name", name), ("count", count.to_string())],
        ));
    }
    let variant = asked?;
    let separator = pick("；", "; ", lang);
    Some(template(
        knowledge_base,
        "stock_across",
        lang,
        &[("variant", variant), ("lines", lines.join(separator))],
    ))
}

/// The variants in stock (of one colour, when given), listed for the buyer: 红色M码、灰色L码 /
/// grey, size M; red, size L.
fn available_variants(product: &Product, only_color: Option<&str>, lang: Lang) -> String {
    let names: Vec<String> = product
        .stock
        .iter()
        .filter(|(_, &count)| count > 0)
        .filter_map(|(key, _)| {
            let mut parts = key.splitn(2, '/');
            let color = parts.next().unwrap_or_default();
            if only_color.is_some_and(|only| only != color) {
                return None;
            }
            let size = parts.next();
            Some(match lang {
                Lang::Zh => format!(
                    "{color}{}",
                    size.map(|s| format!("{s}码")).unwrap_or_default()
                ),
                Lang::En => match size {
                    Some(size) => format!("{}, size {size}", product.color_en(color)),
                    None => product.color_en(color).to_string(),
                },
            })
        })
        .collect();
    names.join(pick("、", "; ", lang))
}

/// 红色M码 / red, size M.
fn variant_text(product: &Product, variant: &Variant, lang: Lang) -> String {
    let color = variant.color.as_deref();
    match (lang, color, variant.size.as_deref()) {
        (Lang::Zh, c, s) => format!(
            "{}{}",
            c.unwrap_or_default(),
            s.map(|s| format!("{s}码")).unwrap_or_default()
        ),
        (Lang::En, Some(c), Some(s)) => format!(" ({}, size {s})", product.color_en(c)),
        (Lang::En, Some(c), None) => format!(" ({})", product.color_en(c)),
        (Lang::En, None, Some(s)) => format!(" (size {s})"),
        (Lang::En, None, None) => String::new(),
    }
}

fn format_price(price: f64) -> String {
    if price.fract() == 0.0 {
        format!("{price:.0}")
    } else {
        format!("{price:.2}")
    }
}
