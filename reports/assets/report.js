(function() {
var D = JSON.parse(document.getElementById('astraea-data').textContent);
function el(t, a, txt) {
  var e = document.createElement(t);
  for (var k in a) e.setAttribute(k, a[k]);
  if (txt !== undefined) e.textContent = txt;
  return e
}
function fmt(v, d) {
  return v === null || v === undefined ?
      '–' :
      (v === 'inf' ? '∞' : (typeof v === 'number' ? v.toFixed(d) : String(v)))
}
function none(id, msg) {
  var c = document.getElementById(id);
  var p = el('p', {'class': 'missing'}, msg);
  c.parentNode.replaceChild(p, c);
}
var miss = document.getElementById('missing');
D.missing.forEach(function(m) {
  miss.appendChild(el('p', {'class': 'missing'}, 'Missing: ' + m))
});
// Summary, sortable, best values marked.
var cols = [
  ['method', 'method', null], ['model', 'model', null], ['size', 'size', null], ['device', 'device', null],
  ['cells', 'cells', 0], ['sample_s', 'sampling s', 2], ['speedup', 'speedup', 2], ['psnr', 'PSNR dB', 2],
  ['ssim', 'SSIM', 4], ['vbench_proxy', 'VBench-proxy', 4], ['cache_mb', 'cache MB', 1]
];
var better = {sample_s: -1, speedup: 1, psnr: 1, ssim: 1, vbench_proxy: 1};
function num(v) {
  return v === 'inf' ? Infinity : (typeof v === 'number' ? v : null)
}
function drawSummary(rows) {
  var host = document.getElementById('summary');
  host.innerHTML = '';
  if (!rows.length) {
    host.appendChild(el('p', {'class': 'missing'}, 'No sweep cells yet.'));
    return
  }
  var best = {};
  Object.keys(better).forEach(function(k) {
    var vals = rows.map(function(r) {
                     return num(r[k])
                   })
                   .filter(function(x) {
                     return x !== null
                   });
    if (vals.length) best[k] = better[k] > 0 ? Math.max.apply(null, vals) : Math.min.apply(null, vals)
  });
  var t = el('table'), h = el('tr');
  cols.forEach(function(c) {
    var th = el('th', {}, c[1]);
    th.onclick = function() {
      var dir = th.dataset.dir === 'a' ? -1 : 1;
      th.dataset.dir = dir > 0 ? 'a' : 'd';
      rows.sort(function(a, b) {
        var x = num(a[c[0]]), y = num(b[c[0]]);
        if (x === null && y === null) {
          x = String(a[c[0]]);
          y = String(b[c[0]])
        }
        return (x > y ? 1 : x < y ? -1 : 0) * dir
      });
      drawSummary(rows)
    };
    h.appendChild(th)
  });
  t.appendChild(h);
  rows.forEach(function(r) {
    var tr = el('tr');
    cols.forEach(function(c) {
      var td = el('td', {}, c[2] === null ? String(r[c[0]]) : fmt(r[c[0]], c[2]));
      if (best[c[0]] !== undefined && num(r[c[0]]) === best[c[0]]) td.className = 'best';
      tr.appendChild(td)
    });
    t.appendChild(tr)
  });
  host.appendChild(t)
}
drawSummary(D.summary.slice());
function chart(id, cfg) {
  cfg.options =
      Object.assign({animation: false, responsive: true, maintainAspectRatio: false}, cfg.options || {});
  var c = document.getElementById(id);
  new Chart(c, cfg);
  c.dataset.rendered = '1';
  window.__astraea.charts++
}
// Methods compared: the first group's curves (the first sweep's model, size and device).
var colours = ['#d1242f', '#1f6feb', '#1a7f37', '#9a6700', '#8250df', '#bf3989', '#0969da', '#57606a'];
if (D.peers && D.peers.length) {
  var G = D.peers[0], priced = G.priced_on !== undefined;
  var methods = [];
  G.points.forEach(function(p) {
    var m = p.tuned ? 'tuned schedule' : p.method;
    if (methods.indexOf(m) < 0) methods.push(m)
  });
  var curves = function(field) {
    return methods.map(function(m, i) {
      var pts = G.points
                    .filter(function(p) {
                      return (p.tuned ? 'tuned schedule' : p.method) === m && p[field] !== null
                    })
                    .map(function(p) {
                      return {
                        x: priced && p.priced_speedup !== null ? p.priced_speedup : p.speedup, y: p[field]
                      }
                    })
                    .sort(function(a, b) {
                      return a.x - b.x
                    });
      var tuned = m === 'tuned schedule';
      return {
        label: m, data: pts, showLine: !tuned, borderColor: colours[i % colours.length],
            backgroundColor: colours[i % colours.length], pointRadius: tuned ? 8 : 3,
            pointStyle: tuned ? 'star' : 'circle'
      }
    })
  };
  var title = G.group + (priced ? ' (speed priced on ' + G.priced_on + ')' : ' (measured speed)');
  [['peers_psnr', 'psnr', 'PSNR against dense (dB)'], ['peers_vbench', 'vbench', 'VBench-proxy total']]
      .forEach(function(c) {
        chart(c[0], {
          type: 'scatter',
          data: {datasets: curves(c[1])},
          options: {
            plugins: {title: {display: true, text: title}},
            scales: {
              x: {title: {display: true, text: 'speedup over dense'}},
              y: {title: {display: true, text: c[2]}}
            }
          }
        })
      });
  var t = el('table'), h = el('tr');
  var speeds = ['1.5x', '2.0x', '2.5x', '3.0x'];
  h.appendChild(el('th', {}, 'method'));
  speeds.forEach(function(s) {
    h.appendChild(el('th', {}, 'PSNR @' + s));
    h.appendChild(el('th', {}, 'VBench @' + s))
  });
  t.appendChild(h);
  G.equal_speed.forEach(function(r) {
    var tr = el('tr');
    tr.appendChild(el('td', {}, r.method));
    speeds.forEach(function(s) {
      tr.appendChild(el('td', {}, fmt(r.psnr[s], 2)));
      tr.appendChild(el('td', {}, fmt(r.vbench[s], 4)))
    });
    t.appendChild(tr)
  });
  document.getElementById('peers_table').appendChild(t)
} else {
  none('peers_psnr', 'No sweep of several methods: run astraea-bench sweep --method dense --methods ...');
  none('peers_vbench', 'No sweep of several methods.')
}
var S = D.study;
if (S && S.trials.length) {
  var front = S.trials
                  .filter(function(t) {
                    return S.front.indexOf(t.number) >= 0
                  })
                  .sort(function(a, b) {
                    return a.cost_ms - b.cost_ms
                  });
  var chosen = S.trials.filter(function(t) {
    return t.number === S.best
  });
  chart('pareto', {
    type: 'scatter',
    data: {
      datasets: [
        {
          label: 'trials',
          data: S.trials.map(function(t) {
            return {
              x: t.cost_ms, y: t.fitness
            }
          }),
          backgroundColor: '#9fb3c8'
        },
        {
          label: 'Pareto front',
          type: 'line',
          data: front.map(function(t) {
            return {
              x: t.cost_ms, y: t.fitness
            }
          }),
          borderColor: '#1f6feb',
          backgroundColor: '#1f6feb'
        },
        {
          label: 'chosen',
          data: chosen.map(function(t) {
            return {
              x: t.cost_ms, y: t.fitness
            }
          }),
          backgroundColor: '#d1242f',
          pointRadius: 8
        }
      ]
    },
    options: {
      scales: {
        x: {title: {display: true, text: 'predicted latency (ms)'}},
        y: {title: {display: true, text: 'fitness (' + (S.config.fitness || '') + ')'}}
      }
    }
  });
  chart('convergence', {
    type: 'line',
    data: {
      labels: S.convergence.map(function(c) {
        return c.evaluations
      }),
      datasets: [{
        label: 'best fitness',
        data: S.convergence.map(function(c) {
          return c.best
        }),
        borderColor: '#1f6feb',
        stepped: true
      }]
    },
    options: {scales: {x: {title: {display: true, text: 'evaluations'}}}}
  });
} else {
  none('pareto', 'No complete trials: run astraea-bench tune.');
  none('convergence', 'No complete trials: run astraea-bench tune.')
}
if (S && S.schedules.length) {
  var n = Math.max.apply(null, S.schedules.map(function(s) {
    return s.budgets.length
  }));
  var labels = [];
  for (var i = 0; i < n; i++) labels.push(i);
  chart('schedule', {
    type: 'bar',
    data: {
      labels: labels,
      datasets: S.schedules.map(function(s, i) {
        return {
          label: s.name, data: s.budgets, backgroundColor: ['#1f6feb', '#d1242f', '#0a6b2e', '#8250df'][i % 4]
        }
      })
    },
    options: {
      scales: {
        x: {title: {display: true, text: 'sampling step'}},
        y: {min: 0, max: 1, title: {display: true, text: 'token budget'}}
      }
    }
  });
} else
  none('schedule', 'No schedule: run astraea-bench tune (--export).');
if (D.latency.length) {
  var L = D.latency;
  var groups = {};
  L.forEach(function(r) {
    var k = r.model + ' ' + r.size + ' ' + r.device;
    (groups[k] = groups[k] || []).push(r)
  });
  var key = Object.keys(groups)[0], G = groups[key];
  var ops = {};
  G.forEach(function(r) {
    Object.keys(r.ops).forEach(function(o) {
      ops[o] = 1
    })
  });
  var palette =
      ['#1f6feb', '#d1242f', '#0a6b2e', '#8250df', '#bf8700', '#57606a', '#e16f24', '#2da44e', '#cf222e'];
  chart('ops', {
    type: 'bar',
    data: {
      labels: G.map(function(r) {
        return 'budget ' + r.budget
      }),
      datasets: Object.keys(ops).sort().map(function(o, i) {
        return {
          label: o, data: G.map(function(r) {
            return r.ops[o] || 0
          }),
              backgroundColor: palette[i % palette.length]
        }
      })
    },
    options: {
      plugins: {title: {display: true, text: key + ' (' + (G[0].ops_clock || '') + ')'}},
      scales: {x: {stacked: true}, y: {stacked: true, title: {display: true, text: 'ms per step'}}}
    }
  });
  var dense = G[0].dense_ms ||
      G.filter(function(r) {
        return r.budget === 1
      })[0] &&
          G.filter(function(r) {
             return r.budget === 1
           })[0]
              .step_ms;
  var asc = G.slice().sort(function(a, b) {
    return a.budget - b.budget
  });
  chart('latency', {
    type: 'line',
    data: {
      labels: asc.map(function(r) {
        return r.budget
      }),
      datasets: [
        {
          label: 'measured step',
          data: asc.map(function(r) {
            return r.step_ms
          }),
          borderColor: '#d1242f'
        },
        {
          label: 'ideal (dense x budget)',
          data: asc.map(function(r) {
            return dense * r.budget
          }),
          borderColor: '#57606a',
          borderDash: [6, 4]
        }
      ]
    },
    options: {
      plugins: {title: {display: true, text: key}},
      scales: {
        x: {title: {display: true, text: 'token budget'}},
        y: {title: {display: true, text: 'ms per step'}}
      }
    }
  });
} else {
  none('ops', 'No profile: run astraea-bench profile.');
  none('latency', 'No profile: run astraea-bench profile.')
}
if (D.scaling && D.scaling.length) {
  var S = D.scaling, best = {};
  S.forEach(function(r) {
    if (!(r.ranks in best) || r.dense_ms < best[r.ranks].dense_ms) best[r.ranks] = r
  });
  var ranks = Object.keys(best).map(Number).sort(function(a, b) {
    return a - b
  });
  var speedups = function(field) {
    return ranks.map(function(p) {
      return best[p][field] === undefined ? null : best[p][field]
    })
  };
  chart('scaling', {
    type: 'line',
    data: {
      labels: ranks,
      datasets: [
        {label: 'ideal', data: ranks, borderColor: '#57606a', borderDash: [6, 4]},
        {label: 'dense', data: speedups('dense_speedup'), borderColor: '#1f6feb'},
        {label: 'tuned (predicted)', data: speedups('tuned_speedup'), borderColor: '#d1242f'}
      ]
    },
    options: {
      plugins: {
        title: {
          display: true,
          text: S[0].model + ' ' + S[0].size + ' ' + S[0].device + ': ' +
              ranks
                  .map(function(p) {
                    return p + ' = ' + best[p].parallel
                  })
                  .join(', ')
        }
      },
      scales: {
        x: {title: {display: true, text: 'GPUs (ranks)'}},
        y: {title: {display: true, text: 'speedup over 1-GPU dense'}}
      }
    }
  });
} else
  none('scaling', 'No profile on several ranks: run astraea-bench launch --nproc P -- profile.');
var P = D.provenance, pv = document.getElementById('provenance');
var list = el('table');
[['devices', P.devices.join(', ')], ['git revisions', P.git_revisions.join(', ')],
 ['runs', JSON.stringify(P.runs)], ['schema version', String(P.schema_version)]]
    .forEach(function(r) {
      var tr = el('tr');
      tr.appendChild(el('td', {}, r[0]));
      tr.appendChild(el('td', {}, r[1] || '–'));
      list.appendChild(tr)
    });
pv.appendChild(list);
if (P.commands.length) {
  pv.appendChild(el('h3', {}, 'Commands'));
  pv.appendChild(el('pre', {}, P.commands.join('\n')))
}
if (P.versions.length) {
  pv.appendChild(el('h3', {}, 'Versions'));
  pv.appendChild(
      el('pre', {},
         P.versions
             .map(function(v) {
               return JSON.stringify(v)
             })
             .join('\n')))
}
document.querySelectorAll('video').forEach(function(v) {
  v.dataset.canPlay = v.canPlayType('video/mp4; codecs="avc1.42E01E"');
  v.addEventListener('loadedmetadata', function() {
    v.dataset.ready = '1'
  })
});
document.body.dataset.charts = String(window.__astraea.charts);
document.body.dataset.errors = String(window.__astraea.errors.length);
document.body.dataset.done = '1';
})();
