//! DuckDB (bundled): one database file, two tables, one Appender per batch
//! (each flush commits the batch).

use std::path::Path;

use duckdb::{params, Connection};

use crate::gen::{Batch, Totals};
use crate::{Engine, Res};

pub struct Duck {
    conn: Connection,
}

const DIMS: &str = "ts_ms BIGINT NOT NULL, click_id VARCHAR NOT NULL, smartlink INTEGER NOT NULL, offer INTEGER, \
    affiliate INTEGER NOT NULL, source VARCHAR NOT NULL, country VARCHAR NOT NULL, device VARCHAR NOT NULL, \
    os VARCHAR NOT NULL, browser VARCHAR NOT NULL, language VARCHAR NOT NULL, quality VARCHAR NOT NULL, \
    sub1 VARCHAR NOT NULL, sub2 VARCHAR NOT NULL, sub3 VARCHAR NOT NULL";

impl Duck {
    pub fn open(dir: &Path) -> Res<Self> {
        let conn = Connection::open(dir.join("analytics.duckdb"))?;
        conn.execute_batch(&format!(
            "CREATE TABLE clicks ({DIMS}, cost_micros BIGINT NOT NULL);
             CREATE TABLE conversions ({DIMS}, conv_ts_ms BIGINT NOT NULL, status VARCHAR NOT NULL, \
             revenue_micros BIGINT NOT NULL);"
        ))?;
        Ok(Duck { conn })
    }
}

impl Engine for Duck {
    fn ingest(&mut self, b: &Batch) -> Res<()> {
        let mut app = self.conn.appender("clicks")?;
        for i in 0..b.len() {
            app.append_row(params![
                b.ts_ms[i],
                b.click_id[i],
                b.smartlink[i],
                b.offer[i],
                b.affiliate[i],
                b.source[i],
                b.country[i],
                b.device[i],
                b.os[i],
                b.browser[i],
                b.language[i],
                b.quality[i],
                b.sub1[i],
                b.sub2[i],
                b.sub3[i],
                b.cost_micros[i],
            ])?;
        }
        app.flush()?;
        drop(app);
        let mut app = self.conn.appender("conversions")?;
        for c in &b.conv {
            let i = c.click;
            app.append_row(params![
                b.ts_ms[i],
                b.click_id[i],
                b.smartlink[i],
                b.offer[i],
                b.affiliate[i],
                b.source[i],
                b.country[i],
                b.device[i],
                b.os[i],
                b.browser[i],
                b.language[i],
                b.quality[i],
                b.sub1[i],
                b.sub2[i],
                b.sub3[i],
                c.conv_ts_ms,
                c.status,
                c.revenue_micros,
            ])?;
        }
        app.flush()?;
        Ok(())
    }

    fn finish(&mut self) -> Res<()> {
        self.conn.execute_batch("CHECKPOINT")?;
        Ok(())
    }

    fn query(&mut self, sql: &str, ndims: usize) -> Res<(usize, Totals)> {
        let mut stmt = self.conn.prepare(sql)?;
        let mut rows = stmt.query([])?;
        let (mut n, mut t) = (0, Totals::default());
        while let Some(r) = rows.next()? {
            n += 1;
            t.clicks += r.get::<_, i64>(ndims)?;
            t.approved += r.get::<_, i64>(ndims + 1)?;
            t.pending += r.get::<_, i64>(ndims + 2)?;
            t.revenue += r.get::<_, i64>(ndims + 3)?;
            t.cost += r.get::<_, i64>(ndims + 4)?;
        }
        Ok((n, t))
    }

    fn div(&self) -> &'static str {
        "//"
    }
}
