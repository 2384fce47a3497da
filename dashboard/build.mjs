// Builds the dashboard into dist/ (or the folder given as the first
// argument): one minified ES bundle, one stylesheet, index.html.  Prints
// each file's raw and gzipped size and the total, which must stay under
// 150 KB gzipped; the build fails above it so the budget cannot creep.
import { build } from 'esbuild';
import { mkdirSync, readFileSync, writeFileSync, rmSync, readdirSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = process.argv[2] || join(here, 'dist');
const BUDGET = 150 * 1024;

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

await build({
	entryPoints: { early: join(here, 'src/early.js'), app: join(here, 'src/main.js'), style: join(here, 'src/style.css') },
	bundle: true,
	minify: true,
	format: 'esm',
	target: 'es2020',
	outdir: out,
	legalComments: 'none',
	logLevel: 'warning',
});
writeFileSync(join(out, 'index.html'), readFileSync(join(here, 'src/index.html')));

let raw = 0, gz = 0;
for (const f of readdirSync(out).sort()) {
	const data = readFileSync(join(out, f));
	const g = gzipSync(data, { level: 9 }).length;
	raw += data.length;
	gz += g;
	console.log(`  ${f.padEnd(12)} ${(data.length / 1024).toFixed(1).padStart(7)} KB  ${(g / 1024).toFixed(1).padStart(6)} KB gzipped`);
}
console.log(`dashboard: ${(raw / 1024).toFixed(1)} KB, ${(gz / 1024).toFixed(1)} KB gzipped (budget ${BUDGET / 1024} KB) in ${out}`);
if (gz > BUDGET) {
	console.error('dashboard: over the gzipped size budget');
	process.exit(1);
}
