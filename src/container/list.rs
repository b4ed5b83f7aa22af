//! The `--filter` of `ps`, as Docker's daemon reads it: `id=` (a prefix of the id),
//! `name=` (a part of the name), `label=KEY[=VALUE]` and `label!=KEY[=VALUE]`. Values
//! of one key are alternatives; keys, and every label filter, must all match.

use super::labels::LabelFilters;
use super::prune::FilterError;
use super::Container;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    ids: Vec<String>,
    names: Vec<String>,
    labels: LabelFilters,
}

impl ListFilter {
    pub fn parse(filters: &[String]) -> Result<ListFilter, FilterError> {
        let mut filter = ListFilter::default();
        for f in filters {
            let short = |s: &str| s.chars().take(140).collect::<String>();
            let (key, value) = f.split_once('=').ok_or_else(|| FilterError::Format(short(f)))?;
            match key.trim().to_ascii_lowercase().as_str() {
                "id" => filter.ids.push(value.to_owned()),
                "name" => filter.names.push(value.trim_start_matches('/').to_owned()),
                "label" => filter.labels.want(value),
                "label!" => filter.labels.refuse(value),
                _ => return Err(FilterError::Unknown(short(key))),
            }
        }
        Ok(filter)
    }

    pub fn matches(&self, c: &Container) -> bool {
        let any = |wanted: &[String], test: &dyn Fn(&str) -> bool| wanted.is_empty() || wanted.iter().any(|w| test(w));
        any(&self.ids, &|w| c.id().starts_with(w))
            && any(&self.names, &|w| c.config.name.contains(w))
            && self.labels.matches(&c.config.labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_and_malformed_filters_are_refused() {
        let parse = |f: &[&str]| ListFilter::parse(&f.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(parse(&["color=red"]), Err(FilterError::Unknown("color".into())));
        assert_eq!(parse(&["label"]), Err(FilterError::Format("label".into())));
        assert!(parse(&["label=a=b", "label!=c", "id=ab", "name=/web"]).is_ok());
    }
}
