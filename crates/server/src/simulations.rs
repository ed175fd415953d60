//! The simulator behind the admin API, for the dashboard's Simulator page.
//!
//! `GET /api/v1/scenarios` lists the public scenarios bundled in the binary
//! ([`smartlink_sim::EXAMPLES`], so they run from any directory) and the
//! bounds a run must keep. `POST /api/v1/simulations` runs one of them, or a
//! scenario file sent as text (`examples/scenarios/FORMAT.md`), with an
//! optional seed and strategies, and answers the scores with the run's id:
//! the numbers `smartlink simulate --json` prints, taken from the same
//! function ([`smartlink_sim::render_json`]). `GET /api/v1/simulations` lists
//! the runs kept, `GET /api/v1/simulations/{id}` is one, and `{id}.html` its
//! HTML report (the page `smartlink simulate --report` writes). Admin only:
//! an affiliate key is 403.
//!
//! A run is CPU work the click path must not pay for, so it is bounded
//! three ways: the scenario must keep within [`LIMITS`] (checked after it
//! is validated and before anything runs; the 422 names the field); one
//! run at a time per node (a second is 429 with `Retry-After`); and a run
//! still going after `LIMITS.time_limit_secs` is stopped
//! ([`smartlink_sim::run_until`]) and answered 422. It runs on a thread of
//! its own in the batch class at nice 10 (its strategy threads inherit
//! both), so request threads get the CPU whenever they want it, and the
//! handler awaits it without holding a worker. A client that goes away
//! stops its run too.
//!
//! The last [`KEEP`] runs stay in this node's memory, like the dashboard's
//! sessions: a restart forgets them, and behind a load balancer a run's
//! report is on the node that ran it.
//!
//! The report is the simulator's own self-contained page: inline styles and
//! SVG, no script. The dashboard's policy forbids inline styles, so the
//! report has a URL of its own and a policy of its own: inline styles and
//! nothing else (`default-src 'none'`; `img-src data:` for its empty icon),
//! no script at all (`sandbox`), and framed by this origin only (the dashboard shows it in an
//! `<iframe sandbox>`). The dashboard draws the scores table itself from
//! the JSON; the report adds the hourly charts.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use smartlink_sim::{Scenario, SimError, SimReport, Strategy};
use utoipa::ToSchema;

use crate::auth::Scope;
use crate::conversions::off_runtime;
use crate::error::{ApiError, ApiPath, FieldError};
use crate::openapi::{ApiRouter, ErrorBody};
use crate::routes;
use crate::simulation_runs::{Kept, Simulation, SimulationEvent, StrategyScore, KEEP};
use crate::state::AppState;

/// How much one run may ask for.
#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
pub struct Limits {
    /// Clicks the scenario asks for on average: `clicks_per_hour` times
    /// each hour's `hourly_profile` multiplier, over `duration_hours`.
    pub max_expected_clicks: u64,
    pub max_duration_hours: u32,
    /// Offers over the whole run, those that events add included.
    pub max_offers: usize,
    /// Bytes of scenario text.
    pub max_scenario_bytes: usize,
    /// Seconds a run may take before it is stopped.
    pub time_limit_secs: u64,
}

/// The bounds of a run. `drift.yaml` (479k clicks, five strategies) takes
/// 5.6 s in a release build on two cores (docs/benchmarks.md), so 2 M clicks
/// fit in the time limit on a quiet machine; hours and offers bound the
/// hourly tables and the report's size (each strategy keeps hours × offers
/// counts, and the report draws them). Larger scenarios are for
/// `smartlink simulate`.
pub const LIMITS: Limits = Limits {
    max_expected_clicks: 2_000_000,
    max_duration_hours: 24 * 31,
    max_offers: 100,
    max_scenario_bytes: 1 << 20,
    time_limit_secs: 60,
};

/// What to run: a scenario's text or a bundled scenario's name (one of
/// the two), and optionally the seed and strategies.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SimulationRequest {
    /// A scenario file's text: YAML, or JSON (which is YAML too), as
    /// `examples/scenarios/FORMAT.md` describes it.
    pub scenario: Option<String>,
    /// The name of a bundled scenario (`GET /api/v1/scenarios`).
    #[schema(example = "basic")]
    pub example: Option<String>,
    /// Overrides the scenario's seed.
    pub seed: Option<u64>,
    /// Strategies to score besides the oracle, which always runs:
    /// `smartlink`, `random`, `round_robin`, `greedy_epc`. Default: all.
    pub strategies: Option<Vec<String>>,
}

/// The runs this node keeps.
#[derive(Serialize, ToSchema)]
pub struct SimulationList {
    /// Newest first, at most ten.
    pub simulations: Vec<Simulation>,
}

/// A bundled scenario.
#[derive(Clone, Serialize, ToSchema)]
pub struct BundledScenario {
    /// Its file's name without `.yaml`: what `example` takes.
    pub name: &'static str,
    /// What it exercises.
    pub about: &'static str,
    pub seed: u64,
    pub duration_hours: u32,
    /// Clicks it asks for on average.
    pub expected_clicks: u64,
    /// Offers over the run, those that events add included.
    pub offers: usize,
    pub events: usize,
    /// The file as written (YAML; JSON is YAML too).
    pub text: &'static str,
}

/// The bundled scenarios and the bounds of a run.
#[derive(Serialize, ToSchema)]
pub struct ScenarioList {
    pub scenarios: Vec<BundledScenario>,
    pub limits: Limits,
}

pub fn routes() -> ApiRouter<Arc<AppState>> {
    ApiRouter::new()
        .routes(routes!(scenarios => __path_scenarios))
        .routes(routes!(list => __path_list, run => __path_run))
        .routes(routes!(get_one => __path_get_one))
}

fn admin_only(scope: &Scope) -> Result<(), ApiError> {
    match scope {
        Scope::Admin => Ok(()),
        Scope::Affiliate { .. } => Err(ApiError::Forbidden("the simulator is for the admin token only".into())),
    }
}

/// The bundled scenarios, parsed once (the simulator's tests check each
/// is valid; one that were not would be left out and logged).
static BUNDLED: LazyLock<Vec<BundledScenario>> = LazyLock::new(|| {
    smartlink_sim::EXAMPLES
        .iter()
        .filter_map(|e| match smartlink_sim::parse_scenario(e.text) {
            Ok(sc) => Some(BundledScenario {
                name: e.name,
                about: e.about,
                seed: sc.seed,
                duration_hours: sc.duration_hours,
                expected_clicks: sc.expected_clicks().round() as u64,
                offers: sc.offer_count(),
                events: sc.events.len(),
                text: e.text,
            }),
            Err(err) => {
                tracing::error!(scenario = e.name, error = %err, "a bundled scenario does not parse");
                None
            }
        })
        .collect()
});

#[utoipa::path(get, path = "/scenarios", operation_id = "list_scenarios", tag = "simulator", security(("admin_token" = [])),
    responses((status = 200, description = "The public scenarios bundled in the binary, with their text, and the bounds of a run", body = ScenarioList),
              (status = 401, description = "Missing or invalid token", body = ErrorBody),
              (status = 403, description = "An affiliate key", body = ErrorBody)))]
async fn scenarios(axum::Extension(scope): axum::Extension<Scope>) -> Result<Json<ScenarioList>, ApiError> {
    admin_only(&scope)?;
    let scenarios = off_runtime(|| Ok(BUNDLED.clone())).await?;
    Ok(Json(ScenarioList { scenarios, limits: LIMITS }))
}

#[utoipa::path(get, path = "/simulations", operation_id = "list_simulations", tag = "simulator", security(("admin_token" = [])),
    responses((status = 200, description = "The runs this node keeps (its last ten, in memory), newest first", body = SimulationList),
              (status = 401, description = "Missing or invalid token", body = ErrorBody),
              (status = 403, description = "An affiliate key", body = ErrorBody)))]
async fn list(
    State(app): State<Arc<AppState>>,
    axum::Extension(scope): axum::Extension<Scope>,
) -> Result<Json<SimulationList>, ApiError> {
    admin_only(&scope)?;
    Ok(Json(SimulationList { simulations: app.simulations.list() }))
}

/// One 422 naming `path`.
fn unprocessable(path: &str, message: impl Into<String>) -> ApiError {
    let message = message.into();
    ApiError::Unprocessable(format!("{path}: {message}"), vec![FieldError { path: path.to_string(), message }])
}

/// The request's body, or the error naming what is wrong with it.
fn parse_request(body: &[u8]) -> Result<SimulationRequest, ApiError> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("the body is not JSON: {e}")))?;
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        if path == "." {
            ApiError::Unprocessable(message.clone(), vec![FieldError { path: String::new(), message }])
        } else {
            unprocessable(&path, message)
        }
    })
}

/// A scenario error as a 422 naming the field of the scenario at fault.
fn scenario_error(e: SimError) -> ApiError {
    match e {
        SimError::Invalid { field, message, .. } => {
            unprocessable(&format!("scenario.{field}"), format!("{message} (the scenario is not valid)"))
        }
        SimError::Parse { message, .. } => unprocessable("scenario", format!("not a scenario file: {message}")),
        other => unprocessable("scenario", other.to_string()),
    }
}

/// The scenario to run (validated and within [`LIMITS`]), the bundled
/// name it came from, its seed and strategies.
fn prepare(req: SimulationRequest) -> Result<(Scenario, Option<String>, u64, Vec<Strategy>), ApiError> {
    let (text, example) = match (&req.scenario, &req.example) {
        (Some(text), None) => {
            if text.len() > LIMITS.max_scenario_bytes {
                return Err(unprocessable(
                    "scenario",
                    format!("{} bytes; at most {} here", text.len(), LIMITS.max_scenario_bytes),
                ));
            }
            (text.as_str(), None)
        }
        (None, Some(name)) => match smartlink_sim::example(name) {
            Some(e) => (e.text, Some(e.name.to_string())),
            None => {
                let names: Vec<&str> = smartlink_sim::EXAMPLES.iter().map(|e| e.name).collect();
                return Err(unprocessable(
                    "example",
                    format!("no bundled scenario {name:?}; expected one of {}", names.join(", ")),
                ));
            }
        },
        _ => {
            return Err(unprocessable(
                "scenario",
                "expected either `scenario` (a scenario file's text) or `example` (a bundled scenario's name)",
            ))
        }
    };
    let sc = smartlink_sim::parse_scenario(text).map_err(scenario_error)?;
    check_limits(&sc)?;
    let strategies = match &req.strategies {
        None => Strategy::ALL.to_vec(),
        Some(names) => names
            .iter()
            .enumerate()
            .map(|(i, n)| Strategy::parse(n).map_err(|e| unprocessable(&format!("strategies[{i}]"), e.to_string())))
            .collect::<Result<_, _>>()?,
    };
    let seed = req.seed.unwrap_or(sc.seed);
    Ok((sc, example, seed, strategies))
}

/// Refuses a scenario larger than [`LIMITS`] allows, naming the field to change.
fn check_limits(sc: &Scenario) -> Result<(), ApiError> {
    let cli = "run `smartlink simulate` on the file for larger ones";
    if sc.duration_hours > LIMITS.max_duration_hours {
        return Err(unprocessable(
            "scenario.duration_hours",
            format!("{} hours; at most {} here ({cli})", sc.duration_hours, LIMITS.max_duration_hours),
        ));
    }
    let expected = sc.expected_clicks();
    if expected > LIMITS.max_expected_clicks as f64 {
        return Err(unprocessable(
            "scenario.traffic.clicks_per_hour",
            format!(
                "the scenario asks for about {:.0} clicks (clicks_per_hour × hourly_profile over duration_hours); \
                 at most {} here: lower clicks_per_hour or duration_hours ({cli})",
                expected, LIMITS.max_expected_clicks
            ),
        ));
    }
    if sc.offer_count() > LIMITS.max_offers {
        return Err(unprocessable(
            "scenario.offers",
            format!("{} offers (with those events add); at most {} here ({cli})", sc.offer_count(), LIMITS.max_offers),
        ));
    }
    Ok(())
}

/// Sets the flag when dropped: a run whose caller stopped waiting stops.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Runs the scenario on a thread of its own (batch class, nice 10) that
/// holds `permit` until it ends; stopped after `limit`, or when the
/// returned future is dropped. The report and its HTML page.
async fn run_bounded(
    sc: Scenario,
    seed: u64,
    strategies: Vec<Strategy>,
    limit: Duration,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Result<(SimReport, String), ApiError> {
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_on_drop = StopOnDrop(stop.clone());
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("simulation".into())
        .spawn(move || {
            let _permit = permit;
            smartlink_clicklog::sched::batch_thread();
            let done = smartlink_sim::run_until(&sc, seed, &strategies, &stop).map(|r| {
                let html = smartlink_sim::render_html(&r);
                (r, html)
            });
            let _ = tx.send(done);
        })
        .map_err(|e| ApiError::Unexpected(anyhow::Error::new(e).context("starting a simulation thread")))?;
    match tokio::time::timeout(limit, rx).await {
        Ok(Ok(Some(done))) => Ok(done),
        // `None`: stopped, which only the time limit does while we wait.
        Ok(Ok(None)) | Err(_) => Err(ApiError::Unprocessable(
            format!(
                "the simulation ran past the {} s limit and was stopped: ask for fewer clicks (a lower \
                 clicks_per_hour or duration_hours) or fewer strategies, or run `smartlink simulate` on the file",
                limit.as_secs()
            ),
            vec![],
        )),
        Ok(Err(_)) => Err(ApiError::Unexpected(anyhow::anyhow!("the simulation thread ended without an answer"))),
    }
}

/// A new run id: 64 random bits in hex.
fn new_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// The run as the API shows it: the scores exactly as `smartlink simulate
/// --json` prints them (parsed back from the same function's output).
fn summary(
    id: &str,
    example: Option<String>,
    r: &SimReport,
    created_ms: i64,
    elapsed: Duration,
) -> Result<Simulation, ApiError> {
    #[derive(Deserialize)]
    struct Printed {
        results: Vec<StrategyScore>,
    }
    let printed: Printed = serde_json::from_str(&smartlink_sim::render_json(r))
        .map_err(|e| ApiError::Unexpected(anyhow::Error::new(e).context("reading the simulator's JSON")))?;
    Ok(Simulation {
        id: id.to_string(),
        example,
        scenario: r.scenario.clone(),
        seed: r.seed,
        clicks: r.clicks,
        duration_hours: r.duration_hours,
        start_ms: r.start_ms,
        offers: r.offers.clone(),
        events: r.events.iter().map(|e| SimulationEvent { at_hour: e.at_hour, label: e.label.clone() }).collect(),
        results: printed.results,
        created_ms,
        elapsed_ms: elapsed.as_millis() as u64,
        report: format!("/api/v1/simulations/{id}.html"),
    })
}

/// `POST /api/v1/simulations`: see the module doc.
#[utoipa::path(post, path = "/simulations", operation_id = "run_simulation", tag = "simulator", security(("admin_token" = [])),
    request_body(content = SimulationRequest, content_type = "application/json"),
    responses((status = 201, description = "The run's scores (those of `smartlink simulate --json`); `Location` and `report` name it and its HTML report", body = Simulation,
               headers(("location" = String, description = "The run's URL"))),
              (status = 400, description = "The body is not JSON", body = ErrorBody),
              (status = 401, description = "Missing or invalid token", body = ErrorBody),
              (status = 403, description = "An affiliate key; a change with the session cookie but without its `X-CSRF-Token`", body = ErrorBody),
              (status = 422, description = "What is wrong, and `fields` names it: the scenario's field at fault (`scenario.offers[0].payout`), a scenario past the bounds of `GET /api/v1/scenarios`, an unknown example or strategy; or the run passed its time limit", body = ErrorBody),
              (status = 429, description = "Another simulation is running on this node (`Retry-After`)", body = ErrorBody,
               headers(("retry-after" = String, description = "Seconds to wait")))))]
async fn run(
    State(app): State<Arc<AppState>>,
    axum::Extension(scope): axum::Extension<Scope>,
    body: Bytes,
) -> Result<Response, ApiError> {
    admin_only(&scope)?;
    let req = parse_request(&body)?;
    // Parsing a large file is CPU work too: off the async workers.
    let (sc, example, seed, strategies) = off_runtime(move || prepare(req)).await?;
    let permit = app
        .simulations
        .gate()
        .ok_or_else(|| ApiError::Busy("another simulation is running on this server: try again when it ends".into()))?;
    let started = Instant::now();
    let limit = Duration::from_secs(LIMITS.time_limit_secs);
    let (report, html) = run_bounded(sc, seed, strategies, limit, permit).await?;
    let id = new_id();
    let s = summary(&id, example, &report, (app.clock)(), started.elapsed())?;
    tracing::info!(id = %id, scenario = %s.scenario, seed, clicks = s.clicks, elapsed_ms = s.elapsed_ms, "simulation run");
    app.simulations.keep(Kept { summary: s.clone(), html });
    let mut r = (StatusCode::CREATED, Json(s)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/simulations/{id}")) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

/// What the report page may do: show itself with its inline styles, in a
/// frame of this origin or a tab of its own; nothing loads, nothing runs.
/// (`img-src data:` is for its empty icon, `data:,`.)
pub const REPORT_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; \
                              form-action 'none'; frame-ancestors 'self'; sandbox";

#[utoipa::path(get, path = "/simulations/{id}", operation_id = "get_simulation", tag = "simulator", security(("admin_token" = [])),
    params(("id" = String, Path, description = "The run's id, optionally with `.json` or `.html` (its HTML report)")),
    responses((status = 200, description = "The run; its HTML report (self-contained: inline styles and SVG, no script) for `.html`", content((Simulation = "application/json"), (String = "text/html"))),
              (status = 400, description = "An extension other than `.json` or `.html`", body = ErrorBody),
              (status = 401, description = "Missing or invalid token", body = ErrorBody),
              (status = 403, description = "An affiliate key", body = ErrorBody),
              (status = 404, description = "No such run on this node (it keeps its last ten, in memory)", body = ErrorBody)))]
async fn get_one(
    State(app): State<Arc<AppState>>,
    axum::Extension(scope): axum::Extension<Scope>,
    ApiPath(target): ApiPath<String>,
) -> Result<Response, ApiError> {
    admin_only(&scope)?;
    let (id, html) = match target.split_once('.') {
        None => (target.as_str(), false),
        Some((id, "json")) => (id, false),
        Some((id, "html")) => (id, true),
        Some((_, ext)) => {
            return Err(ApiError::BadRequest(format!("unknown extension {ext:?}; expected .json or .html")));
        }
    };
    let kept = app.simulations.get(id).ok_or_else(|| {
        ApiError::NotFound(format!(
            "no simulation {id:?} on this server (it keeps its last {KEEP} runs, in memory: run it again)"
        ))
    })?;
    if !html {
        return Ok(Json(kept.summary.clone()).into_response());
    }
    let mut r = kept.html.clone().into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(REPORT_CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("SAMEORIGIN"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(body: serde_json::Value) -> Result<(Scenario, Option<String>, u64, Vec<Strategy>), ApiError> {
        prepare(parse_request(body.to_string().as_bytes())?)
    }

    /// The message and the field paths of a refusal.
    fn refusal(r: Result<impl Sized, ApiError>) -> (String, Vec<String>) {
        match r {
            Err(ApiError::Unprocessable(m, f)) => (m, f.into_iter().map(|f| f.path).collect()),
            Err(e) => panic!("expected a 422, got {e:?}"),
            Ok(_) => panic!("expected a 422, got a run"),
        }
    }

    const SMALL: &str = "name: small\nduration_hours: 2\ntraffic: {clicks_per_hour: 100, segments: [{country: US, device: mobile, os: ios, share: 1}]}\noffers: [{id: a, payout: 1, cr: 0.1}]\n";

    #[test]
    fn a_bundled_scenario_runs_with_its_own_seed_and_every_strategy_unless_told_otherwise() {
        let (sc, example, seed, strategies) = req(serde_json::json!({ "example": "drift" })).unwrap();
        assert_eq!((sc.name.as_str(), example.as_deref(), seed), ("drift", Some("drift"), 2));
        assert_eq!(strategies, Strategy::ALL.to_vec());
        let (_, example, seed, strategies) =
            req(serde_json::json!({ "scenario": SMALL, "seed": 9, "strategies": ["random"] })).unwrap();
        assert_eq!((example, seed, strategies), (None, 9, vec![Strategy::Random]));
    }

    #[test]
    fn each_bad_request_is_refused_naming_what_is_wrong() {
        let bad_payout = SMALL.replace("payout: 1,", "payout: -1,");
        let huge = SMALL.replace("clicks_per_hour: 100", "clicks_per_hour: 5000000");
        let long = SMALL.replace("duration_hours: 2", "duration_hours: 800");
        let many: String = (0..101).map(|i| format!("{{id: o{i}, payout: 1, cr: 0.1}}")).collect::<Vec<_>>().join(", ");
        let many = SMALL.replace("[{id: a, payout: 1, cr: 0.1}]", &format!("[{many}]"));
        let cases: Vec<(serde_json::Value, &str, &str)> = vec![
            (serde_json::json!({ "scenario": bad_payout }), "scenario.offers[0].payout", "expected a number >= 0"),
            (serde_json::json!({ "scenario": "name: [" }), "scenario", "not a scenario file"),
            (serde_json::json!({ "scenario": "duration_hours: 2" }), "scenario", "missing field"),
            (serde_json::json!({ "scenario": huge }), "scenario.traffic.clicks_per_hour", "about 10000000 clicks"),
            (serde_json::json!({ "scenario": long }), "scenario.duration_hours", "at most 744"),
            (serde_json::json!({ "scenario": many }), "scenario.offers", "101 offers"),
            (serde_json::json!({ "example": "nope" }), "example", "expected one of basic, drift"),
            (serde_json::json!({}), "scenario", "expected either"),
            (serde_json::json!({ "scenario": SMALL, "example": "basic" }), "scenario", "expected either"),
            (
                serde_json::json!({ "example": "basic", "strategies": ["smartlink", "best"] }),
                "strategies[1]",
                "unknown strategy \"best\"",
            ),
            (serde_json::json!({ "example": "basic", "seed": -1 }), "seed", "invalid value"),
            (serde_json::json!({ "example": "basic", "speed": 1 }), "speed", "unknown field `speed`"),
            (serde_json::json!(["basic"]), "", "expected struct SimulationRequest"),
        ];
        for (body, path, says) in cases {
            let (message, paths) = refusal(req(body.clone()));
            assert_eq!(paths, [path], "{body}: {message}");
            assert!(message.contains(says), "{body}: {message:?} does not say {says:?}");
        }
        let text = "x".repeat(LIMITS.max_scenario_bytes + 1);
        let (message, paths) = refusal(req(serde_json::json!({ "scenario": text })));
        assert_eq!(paths, ["scenario"]);
        assert!(message.contains("at most 1048576"), "{message}");
        assert!(matches!(parse_request(b"{"), Err(ApiError::BadRequest(_))));
    }

    #[tokio::test]
    async fn a_run_past_its_time_limit_is_stopped_refused_and_frees_the_next_run() {
        let gate = Arc::new(tokio::sync::Semaphore::new(1));
        let (sc, _, seed, strategies) = req(serde_json::json!({ "example": "drift" })).unwrap();
        let permit = gate.clone().try_acquire_owned().unwrap();
        let started = Instant::now();
        let (message, _) = refusal(run_bounded(sc, seed, strategies, Duration::ZERO, permit).await);
        assert!(message.contains("ran past the 0 s limit"), "{message}");
        // The run's thread lets go of the gate once it sees the flag: at
        // once, rather than after the whole week of drift.
        let again = tokio::time::timeout(Duration::from_secs(30), gate.clone().acquire_owned()).await;
        assert!(again.is_ok(), "the stopped run still holds the gate");
        assert!(started.elapsed() < Duration::from_secs(30));

        let (sc, _, seed, strategies) = req(serde_json::json!({ "scenario": SMALL })).unwrap();
        let permit = again.unwrap().unwrap();
        let (report, html) =
            run_bounded(sc.clone(), seed, strategies.clone(), Duration::from_secs(60), permit).await.unwrap();
        assert_eq!(report, smartlink_sim::run(&sc, seed, &strategies), "the same run as the library's");
        assert_eq!(html, smartlink_sim::render_html(&report));
    }

    #[test]
    fn the_report_may_show_its_inline_styles_and_nothing_else() {
        for part in ["default-src 'none'", "style-src 'unsafe-inline'", "frame-ancestors 'self'", "sandbox"] {
            assert!(REPORT_CSP.split("; ").any(|p| p == part), "{part}");
        }
        assert!(!REPORT_CSP.contains("script-src"));
        // The report has no script for the policy to break.
        let r = smartlink_sim::run(&smartlink_sim::parse_scenario(SMALL).unwrap(), 1, &[Strategy::Smartlink]);
        assert!(!smartlink_sim::render_html(&r).contains("<script"));
    }

    #[test]
    fn a_busy_simulator_is_a_429_with_retry_after() {
        let r = ApiError::Busy("another simulation is running".into()).into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers().get("retry-after").map(|v| v.as_bytes()), Some(&b"5"[..]));
    }
}
