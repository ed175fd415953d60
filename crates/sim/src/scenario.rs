//! The scenario file (FORMAT.md): parsing and validation into a
//! [`Scenario`] the simulator can trust.
//!
//! Parsing is two-step: serde reads the YAML into raw structs that mirror
//! the file (unknown keys are rejected, and serde's errors carry the path,
//! e.g. `offers[2].payout`), then [`validate`] checks the meaning of every
//! value and reports the offending field and what was expected.

use std::path::Path;

use serde::Deserialize;
use smartlink_core::model::{Country, Device, Os, Segment, Status};

use crate::SimError;

/// The clock start when the file gives none: 2026-01-05T00:00:00Z.
pub const DEFAULT_START_MS: i64 = 1_767_571_200_000;

/// A validated scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    pub name: String,
    pub seed: u64,
    /// Simulated clock start, ms since the Unix epoch (UTC).
    pub start_ms: i64,
    pub duration_hours: u32,
    pub traffic: Traffic,
    /// The initial pool, in file order.
    pub offers: Vec<OfferSpec>,
    /// Mean of the exponential click→postback delay, minutes (0 = immediate).
    pub delay_mean_minutes: f64,
    /// Sorted by `at_hour`, ties in file order.
    pub events: Vec<Event>,
}

impl Scenario {
    /// The clicks the scenario asks for on average: each simulated hour's
    /// Poisson rate (`clicks_per_hour` times its UTC hour's multiplier),
    /// summed. What a run costs grows with it.
    pub fn expected_clicks(&self) -> f64 {
        let first = self.start_ms.div_euclid(3_600_000);
        (0..self.duration_hours as i64)
            .map(|h| self.traffic.hourly_profile[(first + h).rem_euclid(24) as usize])
            .sum::<f64>()
            * self.traffic.clicks_per_hour
    }

    /// Offers in the pool over the whole run: the initial ones and those
    /// events add.
    pub fn offer_count(&self) -> usize {
        self.offers.len() + self.events.iter().filter(|e| matches!(e.action, EventAction::AddOffer(_))).count()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Traffic {
    pub clicks_per_hour: f64,
    /// Multiplier of `clicks_per_hour` by UTC hour.
    pub hourly_profile: [f64; 24],
    /// Shares normalised to sum 1.
    pub segments: Vec<(Segment, f64)>,
}

/// A segment pattern of `cr_by_segment`: `None` is `*`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SegmentPattern {
    pub country: Option<Country>,
    pub device: Option<Device>,
    pub os: Option<Os>,
}

impl SegmentPattern {
    pub fn matches(&self, s: &Segment) -> bool {
        self.country.is_none_or(|c| c == s.country)
            && self.device.is_none_or(|d| d == s.device)
            && self.os.is_none_or(|o| o == s.os)
    }

    /// Number of `*` parts: fewer is more specific.
    pub fn wildcards(&self) -> usize {
        self.country.is_none() as usize + self.device.is_none() as usize + self.os.is_none() as usize
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct TargetingSpec {
    pub countries: Option<Vec<Country>>,
    pub devices: Option<Vec<Device>>,
    pub os: Option<Vec<Os>>,
    /// UTC hours in which the offer accepts clicks.
    pub hours: Option<Vec<u8>>,
}

impl TargetingSpec {
    pub fn accepts(&self, s: &Segment) -> bool {
        self.countries.as_ref().is_none_or(|c| c.contains(&s.country))
            && self.devices.as_ref().is_none_or(|d| d.contains(&s.device))
            && self.os.as_ref().is_none_or(|o| o.contains(&s.os))
    }

    /// Bit `h` set = accepts clicks in UTC hour `h`.
    pub fn hour_mask(&self) -> u32 {
        match &self.hours {
            None => (1 << 24) - 1,
            Some(hs) => hs.iter().fold(0, |m, &h| m | (1 << h)),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DailyCap {
    pub conversions: Option<u64>,
    pub clicks: Option<u64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct OfferSpec {
    pub id: String,
    pub payout: f64,
    pub targeting: TargetingSpec,
    /// Default true conversion rate.
    pub cr: f64,
    /// Overrides in file order.
    pub cr_by_segment: Vec<(SegmentPattern, f64)>,
    pub cr_by_hour: [f64; 24],
    pub approval_rate: f64,
    pub daily_cap: DailyCap,
    pub status: Status,
}

impl OfferSpec {
    /// The true base rate for a segment: the most specific matching key
    /// (fewest `*`), ties broken by the order written; `cr` otherwise.
    pub fn cr_for(&self, s: &Segment) -> f64 {
        let mut best: Option<(usize, f64)> = None;
        for (p, v) in &self.cr_by_segment {
            if p.matches(s) && best.is_none_or(|(w, _)| p.wildcards() < w) {
                best = Some((p.wildcards(), *v));
            }
        }
        best.map_or(self.cr, |(_, v)| v)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub at_hour: u32,
    pub action: EventAction,
}

#[derive(Clone, Debug, PartialEq)]
pub enum EventAction {
    /// Changes to an existing offer. All but `cr_multiplier` are announced
    /// to the router.
    Change {
        offer: String,
        payout: Option<f64>,
        status: Option<Status>,
        cr_multiplier: Option<f64>,
        daily_cap: Option<DailyCap>,
    },
    AddOffer(Box<OfferSpec>),
}

impl EventAction {
    /// Whether the router is told (the catalog changes).
    pub fn announced(&self) -> bool {
        match self {
            EventAction::Change { payout, status, daily_cap, .. } => {
                payout.is_some() || status.is_some() || daily_cap.is_some()
            }
            EventAction::AddOffer(_) => true,
        }
    }
}

// ---- raw file structure -------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: Option<String>,
    seed: Option<u64>,
    start: Option<String>,
    duration_hours: u32,
    traffic: RawTraffic,
    offers: Vec<RawOffer>,
    conversion_delay_minutes: Option<RawDelay>,
    #[serde(default)]
    events: Vec<RawEvent>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTraffic {
    clicks_per_hour: f64,
    hourly_profile: Option<Vec<f64>>,
    segments: Vec<RawSegment>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSegment {
    country: String,
    device: String,
    os: String,
    share: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOffer {
    id: String,
    payout: f64,
    targeting: Option<RawTargeting>,
    cr: Option<f64>,
    cr_by_segment: Option<Ordered>,
    cr_by_hour: Option<Vec<f64>>,
    approval_rate: Option<f64>,
    daily_cap: Option<RawCap>,
    status: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTargeting {
    countries: Option<Vec<String>>,
    devices: Option<Vec<String>>,
    os: Option<Vec<String>>,
    hours: Option<Vec<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCap {
    conversions: Option<u64>,
    clicks: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDelay {
    mean: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    at_hour: u32,
    offer: Option<String>,
    payout: Option<f64>,
    status: Option<String>,
    cr_multiplier: Option<f64>,
    daily_cap: Option<RawCap>,
    add_offer: Option<RawOffer>,
}

// ---- loading and validation ---------------------------------------------

/// Reads and validates a scenario file. Errors name the file, the field
/// and what was expected.
pub fn load_scenario(path: &Path) -> Result<Scenario, SimError> {
    let text = std::fs::read_to_string(path).map_err(|e| SimError::Io { path: path.to_path_buf(), source: e })?;
    parse_scenario(&text).map_err(|e| e.in_file(path))
}

/// A YAML mapping's entries in the order written (`cr_by_segment` breaks
/// ties by it).
#[derive(Default)]
struct Ordered(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Ordered, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a mapping of \"COUNTRY/device/os\" keys to probabilities")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Ordered, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = m.next_entry::<String, serde_json::Value>()? {
                    out.push(entry);
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Parses and validates scenario text (YAML or JSON).
pub fn parse_scenario(text: &str) -> Result<Scenario, SimError> {
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    // The parser's error shows the line; the key path says which field.
    let mut path = String::new();
    let raw: RawScenario = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            path = e.path().to_string();
            e.into_inner()
        })
    })
    .map_err(|e| {
        let message = if path.is_empty() || path == "." { e.to_string() } else { format!("{path}: {e}") };
        SimError::Parse { file: None, message }
    })?;
    validate(raw)
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> SimError {
    SimError::Invalid { file: None, field: field.into(), message: message.into() }
}

fn check_rate(field: &str, v: f64) -> Result<f64, SimError> {
    if v.is_finite() && (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(invalid(field, format!("expected a probability between 0 and 1, got {v}")))
    }
}

fn check_nonneg(field: &str, v: f64) -> Result<f64, SimError> {
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(invalid(field, format!("expected a number >= 0, got {v}")))
    }
}

fn hours24(field: &str, v: Option<Vec<f64>>) -> Result<[f64; 24], SimError> {
    let mut out = [1.0; 24];
    if let Some(v) = v {
        if v.len() != 24 {
            return Err(invalid(field, format!("expected 24 multipliers (one per UTC hour), got {}", v.len())));
        }
        for (i, x) in v.into_iter().enumerate() {
            out[i] = check_nonneg(&format!("{field}[{i}]"), x)?;
        }
    }
    Ok(out)
}

const OS_NAMES: [&str; 6] = ["windows", "macos", "linux", "ios", "android", "other"];

fn parse_country(field: &str, s: &str) -> Result<Country, SimError> {
    Country::parse(s).map_err(|e| invalid(field, e.0))
}

fn parse_device(field: &str, s: &str) -> Result<Device, SimError> {
    Device::parse(s).map_err(|_| invalid(field, format!("expected one of desktop, mobile, tablet, got {s:?}")))
}

fn parse_os(field: &str, s: &str) -> Result<Os, SimError> {
    if OS_NAMES.iter().any(|n| n.eq_ignore_ascii_case(s)) {
        Os::parse(s).map_err(|e| invalid(field, e.0))
    } else {
        Err(invalid(field, format!("expected one of {}, got {s:?}", OS_NAMES.join(", "))))
    }
}

fn parse_status(field: &str, s: &str) -> Result<Status, SimError> {
    match s {
        "active" => Ok(Status::Active),
        "paused" => Ok(Status::Paused),
        _ => Err(invalid(field, format!("expected active or paused, got {s:?}"))),
    }
}

fn parse_cap(c: RawCap) -> DailyCap {
    DailyCap { conversions: c.conversions, clicks: c.clicks }
}

fn parse_offer(field: &str, raw: RawOffer) -> Result<OfferSpec, SimError> {
    if smartlink_core::model::Id::parse(&raw.id).is_err() {
        return Err(invalid(
            format!("{field}.id"),
            format!("expected 1 to 64 characters from A-Z a-z 0-9 _ -, got {:?}", raw.id),
        ));
    }
    let payout = check_nonneg(&format!("{field}.payout"), raw.payout)?;
    let mut targeting = TargetingSpec::default();
    if let Some(t) = raw.targeting {
        let list = |name: &str, v: &Option<Vec<String>>| -> Result<(), SimError> {
            if v.as_ref().is_some_and(|v| v.is_empty()) {
                return Err(invalid(
                    format!("{field}.targeting.{name}"),
                    "expected a non-empty list (leave the key out to accept everything)",
                ));
            }
            Ok(())
        };
        list("countries", &t.countries)?;
        list("devices", &t.devices)?;
        list("os", &t.os)?;
        if let Some(cs) = t.countries {
            targeting.countries = Some(
                cs.iter()
                    .enumerate()
                    .map(|(i, c)| parse_country(&format!("{field}.targeting.countries[{i}]"), c))
                    .collect::<Result<_, _>>()?,
            );
        }
        if let Some(ds) = t.devices {
            targeting.devices = Some(
                ds.iter()
                    .enumerate()
                    .map(|(i, d)| parse_device(&format!("{field}.targeting.devices[{i}]"), d))
                    .collect::<Result<_, _>>()?,
            );
        }
        if let Some(os) = t.os {
            targeting.os = Some(
                os.iter()
                    .enumerate()
                    .map(|(i, o)| parse_os(&format!("{field}.targeting.os[{i}]"), o))
                    .collect::<Result<_, _>>()?,
            );
        }
        if let Some(hs) = t.hours {
            if hs.is_empty() {
                return Err(invalid(
                    format!("{field}.targeting.hours"),
                    "expected a non-empty list of UTC hours 0..23",
                ));
            }
            let mut out = Vec::new();
            for (i, h) in hs.into_iter().enumerate() {
                if h > 23 {
                    return Err(invalid(
                        format!("{field}.targeting.hours[{i}]"),
                        format!("expected a UTC hour 0..23, got {h}"),
                    ));
                }
                out.push(h as u8);
            }
            targeting.hours = Some(out);
        }
    }
    let cr = check_rate(&format!("{field}.cr"), raw.cr.unwrap_or(0.0))?;
    let mut cr_by_segment = Vec::new();
    for (key, v) in raw.cr_by_segment.unwrap_or_default().0 {
        let kf = format!("{field}.cr_by_segment.{key:?}");
        let parts: Vec<&str> = key.split('/').collect();
        if parts.len() != 3 {
            return Err(invalid(kf, "expected a key COUNTRY/device/os where any part may be \"*\""));
        }
        let star = |p: &str| p == "*";
        let pattern = SegmentPattern {
            country: if star(parts[0]) { None } else { Some(parse_country(&kf, parts[0])?) },
            device: if star(parts[1]) { None } else { Some(parse_device(&kf, parts[1])?) },
            os: if star(parts[2]) { None } else { Some(parse_os(&kf, parts[2])?) },
        };
        let value = match v.as_f64() {
            Some(x) => check_rate(&kf, x)?,
            None => return Err(invalid(kf, format!("expected a probability between 0 and 1, got {v:?}"))),
        };
        cr_by_segment.push((pattern, value));
    }
    let cr_by_hour = hours24(&format!("{field}.cr_by_hour"), raw.cr_by_hour)?;
    let approval_rate = check_rate(&format!("{field}.approval_rate"), raw.approval_rate.unwrap_or(1.0))?;
    let status = match raw.status {
        Some(s) => parse_status(&format!("{field}.status"), &s)?,
        None => Status::Active,
    };
    Ok(OfferSpec {
        id: raw.id,
        payout,
        targeting,
        cr,
        cr_by_segment,
        cr_by_hour,
        approval_rate,
        daily_cap: raw.daily_cap.map(parse_cap).unwrap_or_default(),
        status,
    })
}

fn validate(raw: RawScenario) -> Result<Scenario, SimError> {
    let start_ms = match &raw.start {
        None => DEFAULT_START_MS,
        Some(s) => match chrono::DateTime::parse_from_rfc3339(s) {
            Ok(t) if (2000..2100).contains(&chrono::Datelike::year(&t)) => t.timestamp_millis(),
            _ => {
                return Err(invalid(
                    "start",
                    format!(
                        "expected an RFC 3339 UTC time between 2000 and 2099 such as 2026-01-05T00:00:00Z, got {s:?}"
                    ),
                ))
            }
        },
    };
    if raw.duration_hours == 0 || raw.duration_hours > 24 * 366 {
        return Err(invalid(
            "duration_hours",
            format!("expected a whole number of hours from 1 to 8784, got {}", raw.duration_hours),
        ));
    }
    let cph = check_nonneg("traffic.clicks_per_hour", raw.traffic.clicks_per_hour)?;
    if cph > 10_000_000.0 {
        return Err(invalid("traffic.clicks_per_hour", format!("expected at most 10000000, got {cph}")));
    }
    let hourly_profile = hours24("traffic.hourly_profile", raw.traffic.hourly_profile)?;
    if raw.traffic.segments.is_empty() {
        return Err(invalid("traffic.segments", "expected at least one segment"));
    }
    let mut segments = Vec::new();
    for (i, s) in raw.traffic.segments.iter().enumerate() {
        let f = format!("traffic.segments[{i}]");
        let seg = Segment {
            country: parse_country(&format!("{f}.country"), &s.country)?,
            device: parse_device(&format!("{f}.device"), &s.device)?,
            os: parse_os(&format!("{f}.os"), &s.os)?,
        };
        let share = check_nonneg(&format!("{f}.share"), s.share)?;
        segments.push((seg, share));
    }
    let total: f64 = segments.iter().map(|s| s.1).sum();
    if total <= 0.0 {
        return Err(invalid("traffic.segments", "expected shares that sum to more than 0"));
    }
    for s in &mut segments {
        s.1 /= total;
    }

    let mut offers = Vec::new();
    let mut ids: Vec<String> = Vec::new();
    for (i, o) in raw.offers.into_iter().enumerate() {
        let f = format!("offers[{i}]");
        let spec = parse_offer(&f, o)?;
        if ids.contains(&spec.id) {
            return Err(invalid(format!("{f}.id"), format!("expected a unique id, {:?} is used twice", spec.id)));
        }
        ids.push(spec.id.clone());
        offers.push(spec);
    }
    if offers.len() > 1000 {
        return Err(invalid("offers", "expected at most 1000 offers"));
    }

    let delay_mean_minutes = match raw.conversion_delay_minutes {
        None => 0.0,
        Some(d) => check_nonneg("conversion_delay_minutes.mean", d.mean)?,
    };

    // Events, validated in the order they apply.
    let mut order: Vec<(usize, RawEvent)> = raw.events.into_iter().enumerate().collect();
    order.sort_by_key(|(_, e)| e.at_hour);
    let mut events = Vec::new();
    for (i, e) in order {
        let f = format!("events[{i}]");
        let action = match (e.add_offer, e.offer) {
            (Some(_), Some(_)) => {
                return Err(invalid(&f, "expected either `offer` (a change) or `add_offer`, not both"))
            }
            (Some(add), None) => {
                if e.payout.is_some() || e.status.is_some() || e.cr_multiplier.is_some() || e.daily_cap.is_some() {
                    return Err(invalid(&f, "expected the new offer's fields inside add_offer"));
                }
                let spec = parse_offer(&format!("{f}.add_offer"), add)?;
                if ids.contains(&spec.id) {
                    return Err(invalid(
                        format!("{f}.add_offer.id"),
                        format!("expected a new offer id, {:?} already exists", spec.id),
                    ));
                }
                ids.push(spec.id.clone());
                EventAction::AddOffer(Box::new(spec))
            }
            (None, Some(offer)) => {
                if !ids.contains(&offer) {
                    return Err(invalid(
                        format!("{f}.offer"),
                        format!("expected the id of an offer in the pool by then, got {offer:?}"),
                    ));
                }
                let payout = e.payout.map(|p| check_nonneg(&format!("{f}.payout"), p)).transpose()?;
                let status = e.status.map(|s| parse_status(&format!("{f}.status"), &s)).transpose()?;
                let cr_multiplier =
                    e.cr_multiplier.map(|m| check_nonneg(&format!("{f}.cr_multiplier"), m)).transpose()?;
                let daily_cap = e.daily_cap.map(parse_cap);
                if payout.is_none() && status.is_none() && cr_multiplier.is_none() && daily_cap.is_none() {
                    return Err(invalid(&f, "expected one of payout, status, cr_multiplier, daily_cap"));
                }
                EventAction::Change { offer, payout, status, cr_multiplier, daily_cap }
            }
            (None, None) => return Err(invalid(&f, "expected `offer` with a change, or `add_offer`")),
        };
        events.push(Event { at_hour: e.at_hour, action });
    }

    Ok(Scenario {
        name: raw.name.unwrap_or_else(|| "scenario".to_string()),
        seed: raw.seed.unwrap_or(0),
        start_ms,
        duration_hours: raw.duration_hours,
        traffic: Traffic { clicks_per_hour: cph, hourly_profile, segments },
        offers,
        delay_mean_minutes,
        events,
    })
}
