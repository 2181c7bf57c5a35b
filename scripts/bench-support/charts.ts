/**
 * The charts of the cores sweep (the mixed workload on k cores with WORKERS = k): throughput and
 * latency against cores, one pair per connection count, as SVG rendered by vega-lite without a
 * browser.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import { type ConfigFigures, type PgbenchFigures, passedRuns } from './figures.js';
import type { ServerRecord, Settings } from './runner.js';

/** What one connection count's charts are drawn from. */
export type SweepData = {
  connections: number;
  /** The sweep's configurations, fewest cores first. */
  configs: ConfigFigures[];
  /** Their runs; the ones that passed are drawn as dots. */
  records: ServerRecord[];
  pgbench: PgbenchFigures;
  settings: Settings;
  /** The machine's cores, which the server shares with PostgreSQL and the load generator. */
  machineCores: number;
};

async function renderSvg(spec: TopLevelSpec): Promise<string> {
  // renderer 'none': no canvas or DOM needed; text widths are estimated, which is fine for SVG.
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

const coresAxis = {
  field: 'cores',
  type: 'ordinal' as const,
  title: 'cores for the server (taskset, WORKERS = cores)',
  axis: { labelAngle: 0 },
};

/** One layer of a layered chart, taken from vega-lite's own spec type. */
type LayerSpec = Extract<TopLevelSpec, { layer: unknown }>['layer'][number];
type Labelled = { cores: number; mean: number; label: string };
type ColorEncoding = {
  field: string;
  type: 'nominal';
  title: string | null;
  scale: { domain: string[]; range: string[] };
};

/**
 * Text layers printing each mean beside its point: left of the first core count and right of
 * the others, where the line between the points does not run through the text.
 */
function valueLabels<T extends Labelled>(labelled: T[], color: ColorEncoding): LayerSpec[] {
  const firstCores = Math.min(...labelled.map((item) => item.cores));
  const layer = (values: T[], align: 'left' | 'right'): LayerSpec => ({
    data: { values },
    mark: { type: 'text', align, dx: align === 'left' ? 13 : -13, dy: -9 },
    encoding: { x: coresAxis, y: { field: 'mean', type: 'quantitative' }, text: { field: 'label' }, color },
  });
  return [
    layer(
      labelled.filter((item) => item.cores === firstCores),
      'right',
    ),
    layer(
      labelled.filter((item) => item.cores !== firstCores),
      'left',
    ),
  ];
}

/** The mean of each series as a line with points, and its min–max range as error bars. */
function meanWithRange(
  bars: Array<{ cores: number; min: number; max: number; mean: number }>,
  yTitle: string,
  color: ColorEncoding,
): LayerSpec[] {
  return [
    {
      data: { values: bars },
      mark: { type: 'errorbar', ticks: { size: 14 }, thickness: 1.5 },
      encoding: {
        x: coresAxis,
        y: { field: 'min', type: 'quantitative', title: yTitle, scale: { zero: true } },
        y2: { field: 'max' },
        color,
      },
    },
    {
      data: { values: bars },
      mark: { type: 'line', point: { size: 70, filled: true } },
      encoding: { x: coresAxis, y: { field: 'mean', type: 'quantitative', title: yTitle }, color },
    },
  ];
}

function throughputSpec(data: SweepData): TopLevelSpec {
  const { configs, pgbench, settings } = data;
  const ordersSeries = 'exchange server: orders/s';
  const requestsSeries = 'exchange server: requests/s (all kinds)';
  const pgbenchSeries = 'PostgreSQL alone: pgbench -N tps (band = min–max)';
  // requests/s is only worth a line when the workload sends more than orders.
  const showRequests = configs.some((row) => Math.abs(row.requests.mean - row.orders.mean) > 0.01 * row.orders.mean);
  const series = showRequests ? [ordersSeries, requestsSeries, pgbenchSeries] : [ordersSeries, pgbenchSeries];
  const bars = configs
    .filter((row) => !Number.isNaN(row.orders.mean))
    .flatMap((row) => [
      { cores: row.cpus.length, series: ordersSeries, ...row.orders },
      ...(showRequests ? [{ cores: row.cpus.length, series: requestsSeries, ...row.requests }] : []),
    ]);
  const runs = passedRuns(data.records).flatMap((record) => [
    { cores: record.step.cpus.length, series: ordersSeries, value: record.stress.ordersPerSecond },
    ...(showRequests
      ? [{ cores: record.step.cpus.length, series: requestsSeries, value: record.stress.requestsPerSecond }]
      : []),
  ]);
  const color = {
    field: 'series',
    type: 'nominal' as const,
    title: null,
    scale: { domain: series, range: showRequests ? ['#1f77b4', '#2ca02c', '#d62728'] : ['#1f77b4', '#d62728'] },
    // symbolOpacity: the faint pgbench band would otherwise make every legend symbol faint.
    legend: { orient: 'bottom' as const, direction: 'vertical' as const, labelLimit: 600, symbolOpacity: 1 },
  };
  // Axis titles stay short: with no canvas vega over-estimates text length and would pad the chart.
  const yTitle = 'per second (orders, requests, tps)';
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: 'Throughput versus CPU cores given to the server',
      anchor: 'start',
      offset: 14,
      subtitle: [
        `mean of ${settings.repeats} run(s), bars = min–max, dots = single runs`,
        `${data.connections} connections (pgbench: ${data.connections} clients), ${settings.seconds} s measured per run`,
        `${data.machineCores} cores shared with PostgreSQL and the load generator`,
      ],
    },
    width: 460,
    height: 300,
    layer: [
      {
        // The spread of the pgbench runs, as a band behind its mean.
        data: { values: [{ series: pgbenchSeries, low: Math.min(...pgbench.tps), high: Math.max(...pgbench.tps) }] },
        mark: { type: 'rect', opacity: 0.12 },
        encoding: { y: { field: 'low', type: 'quantitative', title: yTitle }, y2: { field: 'high' }, color },
      },
      {
        data: { values: [{ series: pgbenchSeries, tps: pgbench.mean }] },
        mark: { type: 'rule', strokeDash: [6, 4], strokeWidth: 2 },
        encoding: { y: { field: 'tps', type: 'quantitative', title: yTitle }, color },
      },
      {
        data: {
          values: [{ series: pgbenchSeries, tps: pgbench.mean, label: `pgbench ${pgbench.mean.toFixed(0)} tps` }],
        },
        mark: { type: 'text', align: 'left', baseline: 'top', dx: 4, dy: 6, x: 0 },
        encoding: { y: { field: 'tps', type: 'quantitative' }, text: { field: 'label' }, color },
      },
      ...meanWithRange(bars, yTitle, color),
      ...valueLabels(
        bars.map((bar) => ({ ...bar, label: bar.mean.toFixed(0) })),
        color,
      ),
      {
        data: { values: runs },
        mark: { type: 'point', size: 25, opacity: 0.6 },
        encoding: { x: coresAxis, y: { field: 'value', type: 'quantitative', title: yTitle }, color },
      },
    ],
  };
}

function latencySpec(data: SweepData): TopLevelSpec {
  const bars = data.configs
    .filter((row) => !Number.isNaN(row.p50.mean))
    .flatMap((row) => [
      { cores: row.cpus.length, percentile: 'p50 (median)', ...row.p50 },
      { cores: row.cpus.length, percentile: 'p99', ...row.p99 },
    ]);
  const runs = passedRuns(data.records).flatMap((record) => [
    { cores: record.step.cpus.length, percentile: 'p50 (median)', value: record.stress.latencyMs.p50 },
    { cores: record.step.cpus.length, percentile: 'p99', value: record.stress.latencyMs.p99 },
  ]);
  const color = {
    field: 'percentile',
    type: 'nominal' as const,
    title: 'request latency',
    scale: { domain: ['p50 (median)', 'p99'], range: ['#1f77b4', '#ff7f0e'] },
    legend: { orient: 'bottom' as const },
  };
  const yTitle = 'latency per request (ms)';
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: 'Request latency versus CPU cores given to the server',
      anchor: 'start',
      offset: 14,
      subtitle: [
        `mean of ${data.settings.repeats} run(s), bars = min–max, dots = single runs`,
        `closed loop, ${data.connections} connections, as seen by the client`,
      ],
    },
    width: 460,
    height: 300,
    layer: [
      ...meanWithRange(bars, yTitle, color),
      ...valueLabels(
        bars.map((bar) => ({ ...bar, label: `${bar.mean.toFixed(1)} ms` })),
        color,
      ),
      {
        data: { values: runs },
        mark: { type: 'point', size: 25, opacity: 0.6 },
        encoding: { x: coresAxis, y: { field: 'value', type: 'quantitative', title: yTitle }, color },
      },
    ],
  };
}

/** Writes throughput-<C>-connections.svg and latency-<C>-connections.svg into dir; returns their names. */
export async function writeSweepCharts(dir: string, data: SweepData): Promise<string[]> {
  const files = [
    [`throughput-${data.connections}-connections.svg`, throughputSpec(data)],
    [`latency-${data.connections}-connections.svg`, latencySpec(data)],
  ] as const;
  for (const [name, spec] of files) writeFileSync(path.join(dir, name), await renderSvg(spec));
  return files.map(([name]) => name);
}
