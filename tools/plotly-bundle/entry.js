// The trace types the dashboard draws (app/components/*.py), registered on plotly.js's core: a partial bundle a
// third the size of the full plotly.min.js. tests/app/test_plotly_bundle.py fails when a figure uses a trace type
// that is not registered here.
var Plotly = require('plotly.js/lib/core');

Plotly.register([
    require('plotly.js/lib/scatter'),
    require('plotly.js/lib/scattergl'),
    require('plotly.js/lib/bar'),
    require('plotly.js/lib/box'),
    require('plotly.js/lib/violin'),
    require('plotly.js/lib/histogram'),
    require('plotly.js/lib/heatmap'),
    require('plotly.js/lib/image'),
]);

module.exports = Plotly;
