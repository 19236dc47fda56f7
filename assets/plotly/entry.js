// The plotly.js the app's pages draw with: the core (scatter traces) and the other trace
// types engine/plots.py and engine/diagnostic_plots.py build. Adding a trace type to a
// figure means adding it here, to app/charts.py's BUNDLED_TRACES, and rebuilding (README.md).
var Plotly = require('plotly.js/lib/core');
Plotly.register([
  require('plotly.js/lib/bar'),
  require('plotly.js/lib/heatmap'),
  require('plotly.js/lib/scattergl'),
  require('plotly.js/lib/parcoords'),
]);
module.exports = Plotly;
