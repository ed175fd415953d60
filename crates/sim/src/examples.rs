//! The public scenarios of `examples/scenarios/`, embedded in the binary so
//! that what is bundled runs from any directory (the dashboard's
//! simulator page lists them through `GET /api/v1/scenarios`).

/// One bundled scenario file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Example {
    /// The file's name without `.yaml` (`basic`, `drift`, …).
    pub name: &'static str,
    /// What it exercises, in a line.
    pub about: &'static str,
    /// The file as written.
    pub text: &'static str,
}

macro_rules! example {
    ($name:literal, $about:literal) => {
        Example {
            name: $name,
            about: $about,
            text: include_str!(concat!("../../../examples/scenarios/", $name, ".yaml")),
        }
    };
}

/// Every file of `examples/scenarios/`, by name.
pub const EXAMPLES: [Example; 4] = [
    example!("basic", "Two days of five offers and nothing changing: the baseline."),
    example!("drift", "A week of 13 offers with a pause and resume, a payout change, a silent drop in conversion rate and a new offer."),
    example!("daypart", "Eight days of offers whose conversion rates follow the clock, one running only in the morning."),
    example!("slow-postbacks", "A week of postbacks about 10 h after the click; the best offer fades and a new one joins."),
];

/// The bundled scenario called `name`.
pub fn example(name: &str) -> Option<&'static Example> {
    EXAMPLES.iter().find(|e| e.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_public_scenario_file_is_bundled_and_valid() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/scenarios");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter_map(|n| n.strip_suffix(".yaml").map(String::from))
            .collect();
        files.sort();
        let mut names: Vec<String> = EXAMPLES.iter().map(|e| e.name.to_string()).collect();
        names.sort();
        assert_eq!(names, files);
        for e in EXAMPLES {
            let sc = crate::parse_scenario(e.text).unwrap_or_else(|err| panic!("{}: {err}", e.name));
            assert_eq!(sc.name, e.name, "the file's name field");
            assert_eq!(example(e.name), Some(&e));
        }
        assert_eq!(example("nope"), None);
    }
}
