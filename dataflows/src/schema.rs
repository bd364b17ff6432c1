//! The fields of an output stream's records, as its JSON lines carry them: what an analysis
//! declares with each output so that sinks which need types (an OpenSearch index's mappings, a
//! columnar file's schema, a query engine's table) get them from the analysis, never from the
//! runtime knowing the analysis.

/// A field's type, as the JSON line writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    /// An instant, RFC 3339 UTC with milliseconds (`2025-11-25T10:01:00.000Z`).
    Timestamp,
    /// A UTC day, `YYYY-MM-DD`.
    Date,
    /// A floating-point number (speeds, coordinates).
    Double,
    /// A whole number (counts, record ids).
    Count,
    /// A text matched whole (vins, names, kinds): not split into words.
    Keyword,
    /// A free text (a rejected record, a reason).
    Text,
}

impl FieldType {
    /// The type's name, as `fleetflow analyses` and the docs show it.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::Timestamp => "timestamp",
            FieldType::Date => "date",
            FieldType::Double => "double",
            FieldType::Count => "count",
            FieldType::Keyword => "keyword",
            FieldType::Text => "text",
        }
    }
}

/// One field of an output record.
///
/// # Examples
/// ```
/// use fleetflow_dataflows::schema::{Field, FieldType};
///
/// const FIELDS: &[Field] = &[Field::keyword("vin"), Field::timestamp("at"), Field::double("speed").optional()];
/// assert_eq!(FIELDS[1].kind, FieldType::Timestamp);
/// assert!(FIELDS[2].optional && !FIELDS[0].optional);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// The JSON key.
    pub name: &'static str,
    /// Its type.
    pub kind: FieldType,
    /// Whether some records leave it out.
    pub optional: bool,
}

impl Field {
    /// A field of type `kind` every record has.
    pub const fn new(name: &'static str, kind: FieldType) -> Field {
        Field { name, kind, optional: false }
    }
    /// An instant.
    pub const fn timestamp(name: &'static str) -> Field {
        Field::new(name, FieldType::Timestamp)
    }
    /// A UTC day.
    pub const fn date(name: &'static str) -> Field {
        Field::new(name, FieldType::Date)
    }
    /// A floating-point number.
    pub const fn double(name: &'static str) -> Field {
        Field::new(name, FieldType::Double)
    }
    /// A whole number.
    pub const fn count(name: &'static str) -> Field {
        Field::new(name, FieldType::Count)
    }
    /// A text matched whole.
    pub const fn keyword(name: &'static str) -> Field {
        Field::new(name, FieldType::Keyword)
    }
    /// A free text.
    pub const fn text(name: &'static str) -> Field {
        Field::new(name, FieldType::Text)
    }
    /// The same field, left out of some records.
    pub const fn optional(self) -> Field {
        Field { optional: true, ..self }
    }
}

/// The field names as one line, optional ones in brackets: `vin, window_start, [revision]`.
pub fn describe(fields: &[Field]) -> String {
    let names: Vec<String> = fields.iter().map(|f| if f.optional { format!("[{}]", f.name) } else { f.name.to_string() }).collect();
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use crate::analyses::REGISTRY;

    #[test]
    fn every_output_declares_its_fields_and_its_about_names_them() {
        for analysis in REGISTRY {
            for output in analysis.spec().outputs {
                assert!(!output.fields.is_empty(), "{} declares no fields", output.name);
                for f in output.fields {
                    assert!(output.about.contains(f.name), "{}: about {:?} does not name {}", output.name, output.about, f.name);
                }
            }
        }
    }
}
