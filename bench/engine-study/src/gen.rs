//! Deterministic click and conversion generator, close to the store's click
//! row (crates/store ClickRow) and to report_load's distributions, with the
//! sub-ids, source and cost that issue 17's breakdowns need.

/// Clicks of one ingest batch, column-wise (what the journal ingester would
/// hand the analytics store after decoding ~10k journal records).
#[derive(Default)]
pub struct Batch {
    pub ts_ms: Vec<i64>,
    pub click_id: Vec<String>,
    pub smartlink: Vec<i32>,
    pub offer: Vec<Option<i32>>,
    pub affiliate: Vec<i32>,
    pub source: Vec<&'static str>,
    pub country: Vec<&'static str>,
    pub device: Vec<&'static str>,
    pub os: Vec<&'static str>,
    pub browser: Vec<&'static str>,
    pub language: Vec<&'static str>,
    pub quality: Vec<&'static str>,
    pub sub1: Vec<&'static str>,
    pub sub2: Vec<&'static str>,
    pub sub3: Vec<&'static str>,
    /// Cost of the click in micro-units of the base currency (exact integer).
    pub cost_micros: Vec<i64>,
    /// Conversions of clicks of this batch: the conversion row carries the
    /// click's dimensions and click time (as the store's postbacks do), so
    /// reports count them by click time without joining the click row.
    pub conv: Vec<Conv>,
}

pub struct Conv {
    /// Index of the click in this batch (its dimensions are copied).
    pub click: usize,
    pub conv_ts_ms: i64,
    pub status: &'static str,
    pub revenue_micros: i64,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.ts_ms.len()
    }
}

/// splitmix64: fast, deterministic, no dependency.
pub struct Rng(u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn f64(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Truncated 1/k (Zipf s=1) over n values: a few values dominate.
pub struct Zipf(Vec<f64>);
impl Zipf {
    pub fn new(n: usize) -> Self {
        let mut acc = 0.0;
        let mut cdf: Vec<f64> = (1..=n)
            .map(|k| {
                acc += 1.0 / k as f64;
                acc
            })
            .collect();
        for c in &mut cdf {
            *c /= acc;
        }
        Zipf(cdf)
    }
    pub fn sample(&self, rng: &mut Rng) -> usize {
        let x = rng.f64();
        self.0.partition_point(|&c| c < x).min(self.0.len() - 1)
    }
}

fn names(prefix: &str, n: usize) -> Vec<&'static str> {
    (0..n).map(|i| &*Box::leak(format!("{prefix}{i}").into_boxed_str())).collect()
}

pub const COUNTRIES: [&str; 40] = [
    "US", "IN", "BR", "ID", "MX", "DE", "GB", "FR", "PH", "VN", "TR", "TH", "EG", "NG", "PK", "BD", "RU", "JP", "IT",
    "ES", "CA", "AU", "KR", "AR", "CO", "PL", "ZA", "MY", "SA", "NL", "UA", "PE", "CL", "RO", "KE", "MA", "DZ", "IQ",
    "SE", "BE",
];
pub const OS: [&str; 7] = ["android", "ios", "windows", "macos", "linux", "chromeos", "other"];
pub const BROWSERS: [&str; 8] = ["chrome", "safari", "samsung", "edge", "firefox", "opera", "uc", "other"];
pub const LANGS: [&str; 12] = ["en", "es", "pt", "hi", "id", "de", "fr", "ru", "ar", "tr", "vi", ""];

/// Cardinalities (see docs/analytics-engine.md).
pub const SMARTLINKS: usize = 20;
pub const OFFERS: usize = 50;
pub const AFFILIATES: usize = 50;
pub const SOURCES: usize = 30;
pub const SUB1: usize = 20_000; // zones/placements: the high-cardinality one
pub const SUB2: usize = 50; // creatives, uniform
pub const SUB3: usize = 2_000; // campaigns at the traffic source

/// Sums a report must reconcile with, to the click and the micro-unit.
#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Totals {
    pub clicks: i64,
    pub approved: i64,
    pub pending: i64,
    pub revenue: i64,
    pub cost: i64,
}

pub struct Gen {
    rng: Rng,
    next: usize,
    total: usize,
    start: i64,
    step: f64,
    z_sl: Zipf,
    z_offer: Zipf,
    z_aff: Zipf,
    z_src: Zipf,
    z_country: Zipf,
    z_os: Zipf,
    z_browser: Zipf,
    z_lang: Zipf,
    z_sub1: Zipf,
    z_sub3: Zipf,
    sources: Vec<&'static str>,
    sub1: Vec<&'static str>,
    sub2: Vec<&'static str>,
    sub3: Vec<&'static str>,
    /// Every click in the generated period.
    pub all: Totals,
    /// Clicks of smartlink 1.
    pub sl1: Totals,
    /// Clicks in `window`.
    pub win: Totals,
    pub window: (i64, i64),
}

impl Gen {
    pub fn new(total: usize, days: i64, start: i64) -> Self {
        let span = days * 86_400_000;
        // An exact sub-hour window that starts and ends mid-hour:
        // day 10, 14:17:03.123 to 14:46:33.623 (29.5 min).
        let w0 = start + 10 * 86_400_000 + 14 * 3_600_000 + 17 * 60_000 + 3_123;
        Gen {
            rng: Rng(42),
            next: 0,
            total,
            start,
            step: span as f64 / total as f64,
            z_sl: Zipf::new(SMARTLINKS),
            z_offer: Zipf::new(OFFERS),
            z_aff: Zipf::new(AFFILIATES),
            z_src: Zipf::new(SOURCES),
            z_country: Zipf::new(COUNTRIES.len()),
            z_os: Zipf::new(OS.len()),
            z_browser: Zipf::new(BROWSERS.len()),
            z_lang: Zipf::new(LANGS.len()),
            z_sub1: Zipf::new(SUB1),
            z_sub3: Zipf::new(SUB3),
            sources: names("src", SOURCES),
            sub1: names("z", SUB1),
            sub2: names("cr", SUB2),
            sub3: names("c", SUB3),
            all: Totals::default(),
            sl1: Totals::default(),
            win: Totals::default(),
            window: (w0, w0 + 29 * 60_000 + 30_500),
        }
    }

    /// The next batch of up to `n` clicks, or None when all are generated.
    pub fn batch(&mut self, n: usize) -> Option<Batch> {
        if self.next >= self.total {
            return None;
        }
        let mut b = Batch::default();
        let end = (self.next + n).min(self.total);
        for i in self.next..end {
            let r = &mut self.rng;
            let ts = self.start + (i as f64 * self.step) as i64;
            let os_i = self.z_os.sample(r);
            let device = match os_i {
                0 | 1 => {
                    if r.f64() < 0.85 {
                        "mobile"
                    } else {
                        "tablet"
                    }
                }
                _ => "desktop",
            };
            let offer = (r.f64() > 0.06).then(|| 1 + self.z_offer.sample(r) as i32);
            let quality = match r.f64() {
                x if x < 0.86 => "human",
                x if x < 0.95 => "suspect",
                x if x < 0.99 => "bot",
                _ => "preview",
            };
            let sl = 1 + self.z_sl.sample(r) as i32;
            let src = self.z_src.sample(r);
            let country = self.z_country.sample(r);
            // CPC in micro-units: 100..5099 by source and country.
            let cost = 100 + ((src * 97 + country * 131 + (r.below(7) as usize) * 11) % 5000) as i64;
            b.ts_ms.push(ts);
            b.click_id.push(format!("{i:012x}{:08x}", r.next() as u32));
            b.smartlink.push(sl);
            b.offer.push(offer);
            b.affiliate.push(1 + self.z_aff.sample(r) as i32);
            b.source.push(self.sources[src]);
            b.country.push(COUNTRIES[country]);
            b.device.push(device);
            b.os.push(OS[os_i]);
            b.browser.push(BROWSERS[self.z_browser.sample(r)]);
            b.language.push(LANGS[self.z_lang.sample(r)]);
            b.quality.push(quality);
            b.sub1.push(self.sub1[self.z_sub1.sample(r)]);
            b.sub2.push(self.sub2[r.below(SUB2 as u64) as usize]);
            b.sub3.push(self.sub3[self.z_sub3.sample(r)]);
            b.cost_micros.push(cost);
            let mut t = Totals { clicks: 1, cost, ..Default::default() };
            if let Some(o) = offer {
                if r.f64() < 0.02 {
                    let status = match r.f64() {
                        x if x < 0.70 => "approved",
                        x if x < 0.85 => "pending",
                        _ => "rejected",
                    };
                    // Payout with cents: 1.00 + offer/10 + 0..0.99.
                    let revenue = 1_000_000 + o as i64 * 100_000 + r.below(100) as i64 * 10_000;
                    match status {
                        "approved" => {
                            t.approved = 1;
                            t.revenue = revenue;
                        }
                        "pending" => t.pending = 1,
                        _ => {}
                    }
                    b.conv.push(Conv {
                        click: b.ts_ms.len() - 1,
                        conv_ts_ms: ts + 60_000 + r.below(6 * 3_600_000) as i64,
                        status,
                        revenue_micros: revenue,
                    });
                }
            }
            add(&mut self.all, t);
            if sl == 1 {
                add(&mut self.sl1, t);
            }
            if ts >= self.window.0 && ts < self.window.1 {
                add(&mut self.win, t);
            }
        }
        self.next = end;
        Some(b)
    }
}

fn add(a: &mut Totals, t: Totals) {
    a.clicks += t.clicks;
    a.approved += t.approved;
    a.pending += t.pending;
    a.revenue += t.revenue;
    a.cost += t.cost;
}
