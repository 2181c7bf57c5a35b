/**
 * The compose `monitoring` profile (deploy/monitoring/): every file it mounts
 * exists, Prometheus scrapes the exchange's metrics port, Grafana's dashboard
 * uses the provisioned data source, and every metric the dashboard plots is one
 * the server exports. (`.ci/run` also has docker-compose validate the file with
 * every profile; neither Prometheus nor Grafana runs here.)
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { load } from 'js-yaml';
import { PROJECT_ROOT } from '../support/process.js';

type Service = {
  profiles?: string[];
  image?: string;
  volumes?: string[];
  environment?: Record<string, string>;
  ports?: string[];
};
type Compose = { services: Record<string, Service>; volumes: Record<string, unknown> };
type Panel = {
  title: string;
  datasource: { uid: string };
  targets: Array<{ expr: string; datasource: { uid: string } }>;
};

const read = (file: string) => readFileSync(path.join(PROJECT_ROOT, file), 'utf8');
const compose = load(read('docker-compose.yml')) as Compose;

/** Metric names the server registers (server/observability/metrics.ts), plus prom-client's process_ and nodejs_ defaults. */
function exportedMetrics(): Set<string> {
  const source = read('server/observability/metrics.ts');
  return new Set([...source.matchAll(/['"](exchange_[a-z_]+)['"]/g)].map((match) => match[1] as string));
}

describe('compose monitoring profile (Prometheus and Grafana)', () => {
  it('adds prometheus and grafana to the monitoring profile only, on this host only, with every mounted file present', () => {
    for (const name of ['prometheus', 'grafana']) {
      const service = compose.services[name];
      expect(service, name).to.be.an('object');
      expect(service?.profiles, name).to.deep.equal(['monitoring']);
      expect(service?.image, name).to.match(/:v?\d+\.\d+\.\d+$/);
      for (const port of service?.ports ?? []) expect(port, name).to.match(/^127\.0\.0\.1:/);
      for (const volume of service?.volumes ?? []) {
        const source = volume.split(':')[0] as string;
        if (source.startsWith('./'))
          expect(existsSync(path.join(PROJECT_ROOT, source)), `${name} mounts ${source}`).to.equal(true);
        else expect(compose.volumes, `${name} volume ${source}`).to.have.property(source);
      }
    }
  });

  it('Prometheus scrapes the exchange on its metrics port, which listens beyond the container', () => {
    const exchange = compose.services.exchange;
    const port = exchange?.environment?.METRICS_PORT;
    expect(port).to.equal('9464');
    expect(exchange?.environment?.METRICS_HOST).to.equal('0.0.0.0');
    const config = load(read('deploy/monitoring/prometheus.yml')) as {
      scrape_configs: Array<{ job_name: string; metrics_path: string; static_configs: Array<{ targets: string[] }> }>;
    };
    const job = config.scrape_configs.find((candidate) => candidate.job_name === 'exchange');
    expect(job?.metrics_path).to.equal('/metrics');
    expect(job?.static_configs.flatMap((target) => target.targets)).to.deep.equal([`exchange:${port}`]);
  });

  it('Grafana provisions the Prometheus data source and the dashboard, whose every query names exported metrics', () => {
    const datasources = load(read('deploy/monitoring/grafana/provisioning/datasources/prometheus.yml')) as {
      datasources: Array<{ uid: string; type: string; url: string }>;
    };
    const [datasource] = datasources.datasources;
    expect(datasource).to.include({ type: 'prometheus', url: 'http://prometheus:9090' });
    const providers = load(read('deploy/monitoring/grafana/provisioning/dashboards/exchange.yml')) as {
      providers: Array<{ options: { path: string } }>;
    };
    expect(providers.providers[0]?.options.path).to.equal('/etc/grafana/dashboards');
    expect(compose.services.grafana?.volumes).to.include(
      './deploy/monitoring/grafana/dashboards:/etc/grafana/dashboards:ro',
    );

    const dashboard = JSON.parse(read('deploy/monitoring/grafana/dashboards/exchange.json')) as {
      uid: string;
      panels: Panel[];
    };
    expect(dashboard.uid).to.be.a('string');
    expect(dashboard.panels.length).to.be.greaterThan(5);
    const exported = exportedMetrics();
    expect(exported.has('exchange_requests_total')).to.equal(true);
    for (const panel of dashboard.panels) {
      expect(panel.datasource.uid, panel.title).to.equal(datasource?.uid);
      expect(panel.targets.length, panel.title).to.be.greaterThan(0);
      for (const target of panel.targets) {
        expect(target.datasource.uid, panel.title).to.equal(datasource?.uid);
        const names = [...target.expr.matchAll(/\b((?:exchange|process|nodejs)_[a-z_]+)/g)].map(
          (match) => match[1] as string,
        );
        expect(names.length, target.expr).to.be.greaterThan(0);
        for (const name of names) {
          if (!name.startsWith('exchange_')) continue;
          const base = name.replace(/_(bucket|sum|count)$/, '');
          expect(exported.has(name) || exported.has(base), `${panel.title}: ${name}`).to.equal(true);
        }
      }
    }
  });
});
