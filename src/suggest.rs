//! "Did you mean …?" suggestions for misspelt keys, names and keywords.

/// The candidate closest to `input`, if it is close enough to be a likely typo.
pub fn did_you_mean<'c, I>(input: &str, candidates: I) -> Option<&'c str>
where
    I: IntoIterator<Item = &'c str>,
{
    let input_lower = input.to_lowercase();
    candidates
        .into_iter()
        .map(|candidate| {
            let score = strsim::jaro_winkler(&input_lower, &candidate.to_lowercase());
            (score, candidate)
        })
        // 0.8 keeps transpositions and dropped letters, and rejects unrelated words.
        .filter(|(score, candidate)| *score >= 0.8 && *candidate != input)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::did_you_mean;

    #[test]
    fn suggests_close_spellings_only() {
        let keys = ["required_fields", "enums", "assertions", "on_failure"];
        // (typo, expected suggestion, why)
        let rows = [
            (
                "required_feilds",
                Some("required_fields"),
                "transposed letters",
            ),
            ("enum", Some("enums"), "dropped letter"),
            ("Assertions", Some("assertions"), "case differs"),
            ("producer_id", None, "nothing similar"),
        ];
        for (typo, expected, why) in rows {
            assert_eq!(did_you_mean(typo, keys), expected, "{why}");
        }
    }
}
