// mocap live --viewer web: newest frame by long poll, numbers twice a second. No dependencies.
"use strict";
(function () {
  const img = document.getElementById("frame");
  const waiting = document.getElementById("waiting");
  const state = document.getElementById("state");
  let seq = 0;
  let shownUrl = null;

  function setState(text, cls) {
    state.textContent = text;
    state.className = "state " + cls;
  }

  function fmt(v, digits) {
    if (v === null || v === undefined) return "-";
    if (typeof v === "number") return v.toFixed(digits);
    return String(v);
  }

  async function frames() {
    for (;;) {
      try {
        const r = await fetch("/frame.jpg?after=" + seq, { cache: "no-store" });
        const s = parseInt(r.headers.get("X-Frame-Seq") || "0", 10);
        if (r.status === 200) {
          const blob = await r.blob();
          const url = URL.createObjectURL(blob);
          img.src = url;
          if (shownUrl) URL.revokeObjectURL(shownUrl);
          shownUrl = url;
          waiting.textContent = "";
          setState("live", "live");
        }
        if (s > seq) seq = s;
      } catch (e) {
        setState("connection lost, retrying", "lost");
        await new Promise((ok) => setTimeout(ok, 1000));
      }
    }
  }

  async function numbers() {
    try {
      const r = await fetch("/stats.json", { cache: "no-store" });
      const s = await r.json();
      const digits = { fps_in: 1, fps_out: 1, shown_fps: 1, latency_ms: 0, latency_p95_ms: 0 };
      for (const key of ["fps_in", "fps_out", "shown_fps", "latency_ms", "latency_p95_ms", "people",
                         "frame_id", "dropped"]) {
        document.getElementById(key).textContent = fmt(s[key], digits[key] || 0);
      }
      document.getElementById("ids").textContent = (s.ids && s.ids.length) ? s.ids.join(", ") : "-";
    } catch (e) {
      setState("connection lost, retrying", "lost");
    }
    setTimeout(numbers, 500);
  }

  frames();
  numbers();
})();
