//! The conversion pixel, for advertisers without server-to-server
//! postbacks: `GET /pixel?click_id=…&token=…` (a 1×1 transparent GIF) and
//! `GET /pixel.js`, a script that builds that URL in the advertiser's page.
//!
//! The pixel is a postback by other means: the same parameters, parsing,
//! attribution, dedup and durable recording (`postback::convert`), trusted
//! less (the token alone, only for advertisers with `allow_pixel: true`).
//! It answers `200` with the GIF only once the conversion is committed; a
//! refused pixel answers the postback's `4xx`/`503` with the reason as
//! plain text, since a browser shows neither.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};

use crate::postback::{client_ip, convert, query_params, Channel};
use crate::state::AppState;

/// A 1×1 transparent GIF (GIF89a, one transparent palette entry).
pub const GIF: &[u8] = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff\x21\xf9\x04\x01\x00\x00\x00\x00\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00\x3b";

/// What the pixel did, on success: `recorded`, `duplicate` or `updated`.
const RESULT: &str = "x-smartlink-result";

/// The conversion pixel: the postback's parameters, the token alone.
#[utoipa::path(get, path = "/pixel", tag = "postbacks", security(("postback_token" = [])),
    params(("click_id" = String, Query, description = "The click id (aliases `clickid`, `subid`, `cid`)"),
           ("payout" = Option<String>, Query, description = "Payout (aliases `sum`, `amount`); default the offer's"),
           ("currency" = Option<String>, Query, description = "Currency of `payout` (default the offer's)"),
           ("status" = Option<String>, Query, description = "`approved` (default), `pending`, `rejected`, `chargeback`; `1`/`2`/`3`, `lead`/`sale`"),
           ("txid" = Option<String>, Query, description = "Transaction id (aliases `transaction_id`, `tid`), at most 256 bytes"),
           ("event" = Option<String>, Query, description = "Event name (alias `goal`; default `conversion`), at most 64 bytes")),
    responses((status = 200, description = "A 1×1 transparent GIF, once committed; `X-Smartlink-Result` says what it did",
               content_type = "image/gif", body = Vec<u8>,
               headers(("x-smartlink-result" = String, description = "`recorded`, `duplicate` or `updated`"))),
              (status = 400, description = "A missing, malformed or forged click id (`parameter: message`)", body = String, content_type = "text/plain"),
              (status = 401, description = "A missing or wrong token", body = String, content_type = "text/plain"),
              (status = 403, description = "The advertiser does not allow the pixel", body = String, content_type = "text/plain"),
              (status = 404, description = "An unknown smartlink or offer, or a fallback click", body = String, content_type = "text/plain"),
              (status = 410, description = "The click is older than the offer's attribution window", body = String, content_type = "text/plain"),
              (status = 422, description = "A bad value", body = String, content_type = "text/plain"),
              (status = 503, description = "The conversion could not be stored; retry", body = String, content_type = "text/plain")))]
pub async fn pixel(State(app): State<Arc<AppState>>, req: Request) -> Response {
    let ip = client_ip(&app, &req);
    let params = query_params(&req);
    match convert(&app, &params, ip, Channel::Pixel).await {
        Ok(done) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static("image/gif")),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                (HeaderName::from_static(RESULT), HeaderValue::from_static(done.result)),
            ],
            GIF,
        )
            .into_response(),
        Err(e) => {
            crate::postback::log_refused(&app.metrics, "pixel", &e);
            let text = match &e.parameter {
                Some(p) => format!("{p}: {}\n", e.message),
                None => format!("{}\n", e.message),
            };
            (
                e.status,
                [
                    (header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8")),
                    (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                ],
                text,
            )
                .into_response()
        }
    }
}

/// The pixel script: reads `data-` attributes of its own `<script>` tag
/// (`data-click-id`, `data-event`, `data-txid`, `data-payout`,
/// `data-currency`, `data-status`, `data-token`), else the same names in
/// `window.smartlinkPixel`, and the click id, when neither gives one, from
/// the page's own query (`click_id`, `clickid`, `subid`, `cid`); then loads
/// the pixel from the server the script came from.
pub const SCRIPT: &str = r#"(function () {
  var s = document.currentScript;
  if (!s || !s.src) return;
  var w = window.smartlinkPixel || {};
  var page = new URLSearchParams(window.location.search);
  var get = function (name) {
    var v = s.getAttribute("data-" + name.replace(/_/g, "-"));
    if (v === null || v === "") v = w[name];
    return v === undefined || v === null ? "" : String(v);
  };
  var q = new URLSearchParams();
  var cid = get("click_id") || page.get("click_id") || page.get("clickid") || page.get("subid") || page.get("cid") || "";
  q.set("click_id", cid);
  ["event", "txid", "payout", "currency", "status", "token"].forEach(function (k) {
    var v = get(k);
    if (v) q.set(k, v);
  });
  var img = new Image(1, 1);
  img.src = s.src.replace(/\/pixel\.js(\?.*)?$/, "/pixel") + "?" + q.toString();
})();
"#;

#[utoipa::path(get, path = "/pixel.js", tag = "postbacks",
    responses((status = 200, description = "The pixel script (cached for an hour)", content_type = "text/javascript", body = String)))]
pub async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/javascript; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600")),
        ],
        SCRIPT,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gif_is_a_one_by_one_gif89a() {
        assert_eq!(&GIF[..6], b"GIF89a");
        assert_eq!((GIF[6], GIF[7], GIF[8], GIF[9]), (1, 0, 1, 0), "width and height are 1");
        assert_eq!(GIF.last(), Some(&0x3b), "ends with the trailer");
        assert_eq!(GIF.len(), 43);
    }
}
