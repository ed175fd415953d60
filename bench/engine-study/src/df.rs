//! DataFusion over Parquet. Incremental ingest: each batch becomes one small
//! Parquet file (Snappy) per table, written and fsynced; every COMPACT batches
//! the small files are merged into one large file (ZSTD level 1, 1 Mi-row row
//! groups) and deleted. Queries read the directory as a listing table.
//! `datafusion-mem` additionally loads the compacted files into a MemTable
//! (in-memory Arrow) and queries that instead.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::datasource::MemTable;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};

use crate::gen::{Batch, Totals};
use crate::{Engine, Res};

/// Small files merged into one large file every COMPACT batches (1 M clicks).
const COMPACT: usize = 100;

pub struct Df {
    dir: PathBuf,
    mem: bool,
    rt: tokio::runtime::Runtime,
    ctx: Option<SessionContext>,
    clicks: SchemaRef,
    convs: SchemaRef,
    seq: usize,
    pending: Vec<usize>,
    pub compact_secs: f64,
}

fn dims() -> Vec<Field> {
    let s = |n: &str| Field::new(n, DataType::Utf8, false);
    vec![
        Field::new("ts_ms", DataType::Int64, false),
        s("click_id"),
        Field::new("smartlink", DataType::Int32, false),
        Field::new("offer", DataType::Int32, true),
        Field::new("affiliate", DataType::Int32, false),
        s("source"),
        s("country"),
        s("device"),
        s("os"),
        s("browser"),
        s("language"),
        s("quality"),
        s("sub1"),
        s("sub2"),
        s("sub3"),
    ]
}

fn dim_columns(b: &Batch, idx: &[usize]) -> Vec<ArrayRef> {
    let strs = |v: &Vec<&'static str>| -> ArrayRef { Arc::new(StringArray::from_iter_values(idx.iter().map(|&i| v[i]))) };
    vec![
        Arc::new(Int64Array::from_iter_values(idx.iter().map(|&i| b.ts_ms[i]))),
        Arc::new(StringArray::from_iter_values(idx.iter().map(|&i| b.click_id[i].as_str()))),
        Arc::new(Int32Array::from_iter_values(idx.iter().map(|&i| b.smartlink[i]))),
        Arc::new(idx.iter().map(|&i| b.offer[i]).collect::<Int32Array>()),
        Arc::new(Int32Array::from_iter_values(idx.iter().map(|&i| b.affiliate[i]))),
        strs(&b.source),
        strs(&b.country),
        strs(&b.device),
        strs(&b.os),
        strs(&b.browser),
        strs(&b.language),
        strs(&b.quality),
        strs(&b.sub1),
        strs(&b.sub2),
        strs(&b.sub3),
    ]
}

fn write(path: &Path, schema: &SchemaRef, batches: &mut dyn Iterator<Item = Res<RecordBatch>>, props: WriterProperties) -> Res<()> {
    let file = File::create(path)?;
    let mut w = ArrowWriter::try_new(file.try_clone()?, schema.clone(), Some(props))?;
    for b in batches {
        w.write(&b?)?;
    }
    w.close()?;
    file.sync_all()?;
    Ok(())
}

fn read(path: &Path) -> Res<impl Iterator<Item = Res<RecordBatch>>> {
    let r = ParquetRecordBatchReaderBuilder::try_new(File::open(path)?)?.with_batch_size(65_536).build()?;
    Ok(r.map(|b| b.map_err(Into::into)))
}

impl Df {
    pub fn open(dir: &Path, mem: bool) -> Res<Self> {
        let mut clicks = dims();
        clicks.push(Field::new("cost_micros", DataType::Int64, false));
        let mut convs = dims();
        convs.push(Field::new("conv_ts_ms", DataType::Int64, false));
        convs.push(Field::new("status", DataType::Utf8, false));
        convs.push(Field::new("revenue_micros", DataType::Int64, false));
        std::fs::create_dir_all(dir.join("clicks"))?;
        std::fs::create_dir_all(dir.join("conversions"))?;
        Ok(Df {
            dir: dir.to_path_buf(),
            mem,
            rt: tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?,
            ctx: None,
            clicks: Arc::new(Schema::new(clicks)),
            convs: Arc::new(Schema::new(convs)),
            seq: 0,
            pending: Vec::new(),
            compact_secs: 0.0,
        })
    }

    fn compact(&mut self) -> Res<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let t = Instant::now();
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?))
            .set_max_row_group_row_count(Some(1 << 20))
            .build();
        for (table, schema) in [("clicks", self.clicks.clone()), ("conversions", self.convs.clone())] {
            let d = self.dir.join(table);
            let small: Vec<PathBuf> = self.pending.iter().map(|s| d.join(format!("b{s:06}.parquet"))).collect();
            let mut it = small.iter().map(|p| read(p)).collect::<Res<Vec<_>>>()?.into_iter().flatten();
            write(&d.join(format!("c{:06}.parquet", self.pending[0])), &schema, &mut it, props.clone())?;
            for p in small {
                std::fs::remove_file(p)?;
            }
        }
        self.pending.clear();
        self.compact_secs += t.elapsed().as_secs_f64();
        Ok(())
    }
}

impl Engine for Df {
    fn ingest(&mut self, b: &Batch) -> Res<()> {
        let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
        let all: Vec<usize> = (0..b.len()).collect();
        let mut cols = dim_columns(b, &all);
        cols.push(Arc::new(Int64Array::from(b.cost_micros.clone())));
        let rb = RecordBatch::try_new(self.clicks.clone(), cols)?;
        let name = format!("b{:06}.parquet", self.seq);
        write(&self.dir.join("clicks").join(&name), &self.clicks, &mut std::iter::once(Ok(rb)), props.clone())?;
        let idx: Vec<usize> = b.conv.iter().map(|c| c.click).collect();
        let mut cols = dim_columns(b, &idx);
        cols.push(Arc::new(Int64Array::from_iter_values(b.conv.iter().map(|c| c.conv_ts_ms))));
        cols.push(Arc::new(StringArray::from_iter_values(b.conv.iter().map(|c| c.status))));
        cols.push(Arc::new(Int64Array::from_iter_values(b.conv.iter().map(|c| c.revenue_micros))));
        let rb = RecordBatch::try_new(self.convs.clone(), cols)?;
        write(&self.dir.join("conversions").join(&name), &self.convs, &mut std::iter::once(Ok(rb)), props)?;
        self.pending.push(self.seq);
        self.seq += 1;
        if self.pending.len() == COMPACT {
            self.compact()?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Res<()> {
        self.compact()?;
        let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(2));
        for (table, schema) in [("clicks", self.clicks.clone()), ("conversions", self.convs.clone())] {
            let d = self.dir.join(table);
            if self.mem {
                let mut parts = vec![Vec::new(), Vec::new()];
                let mut files: Vec<PathBuf> = std::fs::read_dir(&d)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
                files.sort();
                let mut k = 0;
                for f in files {
                    for b in read(&f)? {
                        parts[k % 2].push(b?);
                        k += 1;
                    }
                }
                ctx.register_table(table, Arc::new(MemTable::try_new(schema, parts)?))?;
            } else {
                let path = format!("{}/", d.display());
                self.rt.block_on(ctx.register_parquet(table, &path, ParquetReadOptions::default()))?;
            }
        }
        self.ctx = Some(ctx);
        Ok(())
    }

    fn query(&mut self, sql: &str, ndims: usize) -> Res<(usize, Totals)> {
        let ctx = self.ctx.as_ref().ok_or("finish() first")?;
        let batches = self.rt.block_on(async { ctx.sql(sql).await?.collect().await })?;
        let (mut n, mut t) = (0, Totals::default());
        for b in &batches {
            n += b.num_rows();
            let col = |k: usize| -> Res<i64> {
                let a = b.column(ndims + k).as_any().downcast_ref::<Int64Array>().ok_or("metric not Int64")?;
                Ok(a.iter().flatten().sum())
            };
            t.clicks += col(0)?;
            t.approved += col(1)?;
            t.pending += col(2)?;
            t.revenue += col(3)?;
            t.cost += col(4)?;
        }
        Ok((n, t))
    }

    fn div(&self) -> &'static str {
        "/"
    }

    fn compaction_secs(&self) -> f64 {
        self.compact_secs
    }
}
