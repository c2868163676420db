//! A request's query parameters, as the simulated endpoints read them.

/// Decoded `key=value` pairs, in order.
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    /// Decodes a raw query string (`None` for no query).
    pub(crate) fn parse(raw: Option<&str>) -> Query {
        Query(
            url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
                .into_owned()
                .collect(),
        )
    }

    /// The first value of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every pair, for filters.
    pub(crate) fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    /// `limit`, 1 to 1000 (default 10), as the API enforces it.
    pub(crate) fn limit(&self) -> Result<usize, &'static str> {
        match self.get("limit").map(str::parse::<usize>) {
            None => Ok(10),
            Some(Ok(n)) if (1..=1000).contains(&n) => Ok(n),
            _ => Err("limit: Must be between 1 and 1000."),
        }
    }
}
