/* Neuron Atlas dashboard: URL sync, grid refresh, copy buttons, audio playhead, microphone recording. */
(function () {
  "use strict";

  var noUpdate = function () { return window.dash_clientside.no_update; };

  window.dash_clientside = Object.assign({}, window.dash_clientside, {
    atlas: {
      /* Write the page's canonical URL into the address bar without reloading or adding history entries. */
      syncUrl: function (href) {
        if (!href) { return noUpdate(); }
        var target = new URL(href, window.location.origin);
        if (target.pathname !== window.location.pathname) { return noUpdate(); }
        if (window.location.pathname + window.location.search !== href) {
          window.history.replaceState(window.history.state, "", href);
        }
        return "";
      },
      /* The layer grid asks the backend for rows again after a filter changed. */
      purgeGrid: function (query, gridId) {
        try {
          var api = window.dash_ag_grid && window.dash_ag_grid.getApi(gridId);
          if (api) { api.purgeInfiniteCache(); }
        } catch (e) { /* the grid is not mounted yet: its first request reads the new filters */ }
        return "";
      },
      /* What "Save as finding" saves: the current view's path and query. */
      saveRequest: function (n) {
        if (!n) { return noUpdate(); }
        return { href: window.location.pathname + window.location.search, at: Date.now() };
      },
      /* A page's upload limit (bytes, from the backend): dcc.Upload drops a larger file without an event, so a
         chosen or dropped file is measured here and reported to the store its box names in data-upload-rejected
         (e.g. lab-upload-rejected; a file within the limit clears it). */
      guardUpload: function (limit) {
        uploadLimit = limit;
        return noUpdate();
      }
    }
  });

  var uploadLimit = 0;
  function checkUpload(event) {
    var box = event.target && event.target.closest && event.target.closest("[data-upload-rejected]");
    var files = event.type === "drop" ? (event.dataTransfer || {}).files : event.target.files;
    if (!box || !files || !files.length) { return; }
    var file = files[0];
    window.dash_clientside.set_props(box.getAttribute("data-upload-rejected"), { data: uploadLimit > 0 && file.size > uploadLimit
      ? { filename: file.name, size: file.size, at: Date.now() } : null });
  }
  document.addEventListener("change", checkUpload, true);
  document.addEventListener("drop", checkUpload, true);

  /* dcc.Upload renders its file input with autocomplete="off", which is not a valid token for a file input (axe:
     autocomplete-valid, serious); the attribute does nothing there, so it is dropped as upload boxes appear. */
  new MutationObserver(function () {
    var inputs = document.querySelectorAll("input[type=file][autocomplete]");
    for (var i = 0; i < inputs.length; i++) { inputs[i].removeAttribute("autocomplete"); }
  }).observe(document.documentElement, { childList: true, subtree: true });

  /* ------------------------------------------------------------------------------------------ copy */

  function copyText(text, feedback) {
    var done = function (ok) {
      if (!feedback) { return; }
      var old = feedback.getAttribute("data-label") || feedback.textContent;
      feedback.setAttribute("data-label", old);
      feedback.textContent = ok ? "Copied ✓" : "Select and copy: " + text;
      window.setTimeout(function () { feedback.textContent = feedback.getAttribute("data-label"); }, ok ? 1500 : 8000);
    };
    var fallback = function () {
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.style.position = "fixed";
      area.style.opacity = "0";
      document.body.appendChild(area);
      area.select();
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      document.body.removeChild(area);
      done(ok);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { done(true); }, fallback);
    } else {
      fallback();
    }
  }

  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest(".copy-link");
    if (link) {
      window.__atlasLastCopied = window.location.href;
      copyText(window.location.href, link);
      return;
    }
    var button = event.target.closest && event.target.closest(".copy-text");
    if (!button) { return; }
    var text = "";
    if (button.getAttribute("data-copy-href")) {
      text = new URL(button.getAttribute("data-copy-href"), window.location.origin).href;
    } else if (button.getAttribute("data-copy-target")) {
      var el = document.getElementById(button.getAttribute("data-copy-target"));
      text = el ? el.textContent : "";
    }
    window.__atlasLastCopied = text;
    copyText(text, button);
  });

  /* -------------------------------------------------------------------------------------- playhead */

  document.addEventListener("timeupdate", function (event) {
    var audio = event.target;
    if (!audio || !audio.getAttribute || !audio.getAttribute("data-playhead")) { return; }
    var host = document.getElementById(audio.getAttribute("data-playhead"));
    var gd = host && host.querySelector(".js-plotly-plot");
    if (gd && window.Plotly && gd.layout && gd.layout.shapes && gd.layout.shapes.length) {
      window.Plotly.relayout(gd, { "shapes[0].x0": audio.currentTime, "shapes[0].x1": audio.currentTime });
    }
  }, true);

  /* ------------------------------------------------------------------------------------ microphone */

  /* The recorder box (data-mic-store names the store a recording goes to, e.g. lab-mic) and its status line. */
  var recorder = null;
  var chunks = [];
  var micBox = null;

  function status(text) {
    var el = micBox && micBox.querySelector("[data-mic=status]");
    if (el) { el.textContent = text; }
  }

  function encodeWav(samples, rate) {
    var buffer = new ArrayBuffer(44 + samples.length * 2);
    var view = new DataView(buffer);
    var writeString = function (offset, s) { for (var i = 0; i < s.length; i++) { view.setUint8(offset + i, s.charCodeAt(i)); } };
    writeString(0, "RIFF"); view.setUint32(4, 36 + samples.length * 2, true); writeString(8, "WAVE");
    writeString(12, "fmt "); view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, 1, true);
    view.setUint32(24, rate, true); view.setUint32(28, rate * 2, true); view.setUint16(32, 2, true); view.setUint16(34, 16, true);
    writeString(36, "data"); view.setUint32(40, samples.length * 2, true);
    for (var i = 0; i < samples.length; i++) {
      var v = Math.max(-1, Math.min(1, samples[i]));
      view.setInt16(44 + i * 2, v < 0 ? v * 0x8000 : v * 0x7fff, true);
    }
    return new Uint8Array(buffer);
  }

  function toBase64(bytes) {
    var out = "";
    for (var i = 0; i < bytes.length; i += 0x8000) {
      out += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return window.btoa(out);
  }

  function finish(blob) {
    status("converting to 16 kHz WAV…");
    var Ctx = window.AudioContext || window.webkitAudioContext;
    blob.arrayBuffer().then(function (data) {
      return new Ctx().decodeAudioData(data);
    }).then(function (decoded) {
      var rate = 16000;
      var offline = new OfflineAudioContext(1, Math.max(1, Math.ceil(decoded.duration * rate)), rate);
      var source = offline.createBufferSource();
      source.buffer = decoded;
      source.connect(offline.destination);
      source.start();
      return offline.startRendering();
    }).then(function (rendered) {
      var wav = encodeWav(rendered.getChannelData(0), 16000);
      window.dash_clientside.set_props(micBox.getAttribute("data-mic-store"), { data: {
        contents: "data:audio/wav;base64," + toBase64(wav), filename: "microphone.wav", duration_s: rendered.duration } });
      status("recorded " + rendered.duration.toFixed(1) + " s");
    }).catch(function (err) {
      status("the recording could not be converted: " + err.message);
    });
  }

  document.addEventListener("click", function (event) {
    var el = event.target.closest && event.target.closest("[data-mic]");
    if (!el) { return; }
    var action = el.getAttribute("data-mic");
    if (action !== "status" && !(recorder && recorder.state === "recording")) { micBox = el.closest("[data-mic-store]"); }
    if (action === "start") {
      if (!navigator.mediaDevices || !window.MediaRecorder) {
        status("this browser allows the microphone only on https:// or http://localhost pages");
        return;
      }
      navigator.mediaDevices.getUserMedia({ audio: true }).then(function (stream) {
        chunks = [];
        recorder = new MediaRecorder(stream);
        recorder.ondataavailable = function (e) { if (e.data && e.data.size) { chunks.push(e.data); } };
        recorder.onstop = function () {
          stream.getTracks().forEach(function (t) { t.stop(); });
          finish(new Blob(chunks, { type: recorder.mimeType || "audio/webm" }));
        };
        recorder.start();
        status("recording… press Stop when done");
      }).catch(function (err) {
        status("no microphone: " + err.message);
      });
    } else if (action === "stop") {
      if (recorder && recorder.state === "recording") { recorder.stop(); } else { status("not recording"); }
    }
  });
}());
