// Bundles entry.js into app/static/plotly-trainlab.min.js with plotly.js's own esbuild
// settings (its esbuild-config.js: inlined CSS and shaders, the plotly flavour of regl).
const path = require('path');
const esbuild = require('esbuild');
const { environmentPlugin } = require('esbuild-plugin-environment');
const { glsl } = require('esbuild-plugin-glsl');
const InlineCSSPlugin = require('esbuild-plugin-inline-css');

esbuild.build({
  entryPoints: [path.join(__dirname, 'entry.js')],
  outfile: path.join(__dirname, '..', '..', 'app', 'static', 'plotly-trainlab.min.js'),
  format: 'iife', globalName: 'Plotly', bundle: true, minify: true,
  banner: { js: '/* plotly.js 4.1.1 (MIT, Plotly Inc.): core, bar, heatmap, scattergl, ' +
                'parcoords. Built by assets/plotly/build.js; licences of the bundled ' +
                'modules at the end. */' },
  plugins: [InlineCSSPlugin(), glsl({ minify: true }), environmentPlugin({ NODE_DEBUG: false })],
  alias: { regl: '@plotly/regl', stream: 'stream-browserify' },
  define: { global: 'window', 'define.amd': 'false' },
  target: 'es2016', logLevel: 'warning',
}).catch(() => process.exit(1));
