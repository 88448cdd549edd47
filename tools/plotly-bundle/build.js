// Builds assets/plotly-partial.min.js with plotly.js's own esbuild settings (its esbuild-config.js), minified.
// Run through `make plotly-bundle` (npm ci from package-lock.json first).
const path = require('path');
const esbuild = require('esbuild');
const {glsl} = require('esbuild-plugin-glsl');
const {environmentPlugin} = require('esbuild-plugin-environment');
const inlineCss = require('esbuild-plugin-inline-css');
const version = require('plotly.js/package.json').version;

esbuild.build({
    entryPoints: [path.join(__dirname, 'entry.js')],
    outfile: path.join(__dirname, '..', '..', 'assets', 'plotly-partial.min.js'),
    format: 'iife',
    globalName: 'Plotly',
    bundle: true,
    minify: true,
    sourcemap: false,
    plugins: [inlineCss(), glsl({minify: true}), environmentPlugin({NODE_DEBUG: false})],
    alias: {stream: 'stream-browserify'},
    define: {global: 'window'},
    target: 'es2016',
    logLevel: 'warning',
    banner: {js: `/* plotly.js v${version}, partial bundle of the traces in tools/plotly-bundle/entry.js (make plotly-bundle) */`},
}).catch(() => process.exit(1));
