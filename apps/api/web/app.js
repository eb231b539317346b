// The web page: plain ES module, no framework. It only calls this API's own public routes, with the
// API key (when one is entered) in the x-api-key header, so it works the same with keys on or off.
const KEY_STORAGE = 'iiq.apiKey';
const FACE_MATCHING = '@faces';
const FACE_TITLE = 'Face matching';
const TASK_TITLES = {
  classification: 'Classification: top 5 labels',
  'object-detection': 'Objects: boxes and labels',
  'face-detection': 'Faces: boxes and landmarks',
};
const FRIENDLY = {
  IMAGE_TOO_LARGE: 'The file is too big.',
  PAYLOAD_TOO_LARGE: 'The upload has too many files or form fields.',
  IMAGE_TOO_MANY_PIXELS: 'The image has too many pixels.',
  IMAGE_TOO_MANY_FRAMES: 'The animation has too many frames.',
  IMAGE_BAD_SHAPE: 'The image is far too long and thin to analyse.',
  IMAGE_UNSUPPORTED_FORMAT: 'That file is not a supported image (JPEG, PNG, WebP, GIF, TIFF, AVIF or HEIC).',
  UNSUPPORTED_MEDIA_TYPE: 'That file is not a supported image (JPEG, PNG, WebP, GIF, TIFF, AVIF or HEIC).',
  IMAGE_DECODE_FAILED: 'The image is damaged or cut off and cannot be read.',
  IMAGE_CRASHED_WORKER: 'This image crashed our image processors several times, so it is no longer processed.',
  IMAGE_EMPTY: 'The file is empty.',
  IMAGE_MISSING: 'Choose an image or enter an image URL first.',
  INVALID_BASE64: 'The image data is not valid.',
  URL_NOT_ALLOWED: 'That URL is not allowed: only public http(s) addresses can be fetched.',
  URL_FETCH_FAILED: 'The URL could not be reached, or it did not return an image in time.',
  UNKNOWN_MODEL: 'A chosen model is not available on this server.',
  MODEL_TASK_MISMATCH: 'That model cannot do this task.',
  RATE_LIMITED: 'Too many requests for now.',
  QUEUE_FULL: 'The service is busy.',
  SERVICE_UNAVAILABLE: 'The service is temporarily unavailable.',
  UNAUTHORIZED: 'This server needs an API key, or the key given is wrong. Enter it under “API key” at the top.',
  DEADLINE_EXCEEDED: 'The image waited too long in the queue.',
  INPUT_EXPIRED: 'The image expired before a worker reached it.',
  INFERENCE_FAILED: 'The model failed on this image.',
  NOT_FOUND: 'Not found.',
  JOB_NOT_FOUND: 'That job is not known (any more).',
  INVALID_PARAMETER: 'A parameter is not valid.',
  BAD_REQUEST: 'The request was not understood.',
  INTERNAL_ERROR: 'The server failed unexpectedly; try again.',
  NETWORK: 'The server could not be reached.',
  NOTHING_CHOSEN: 'Choose what to run.',
};

const $ = (selector, root = document) => root.querySelector(selector);
const el = (tag, attributes = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === 'text') node.textContent = value;
    else if (name === 'style') Object.assign(node.style, value); // CSSOM, allowed by the page's CSP (style attributes are not)
    else if (value !== undefined && value !== false) node.setAttribute(name, value === true ? '' : value);
  }
  node.append(...children.filter((child) => child !== undefined && child !== null));
  return node;
};
const svgEl = (tag, attributes = {}) => {
  const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  return node;
};
const percent = (p) => `${(p * 100).toFixed(1)}%`;
const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;

class ApiError extends Error {
  constructor(code, message, retryAfter) {
    super(message);
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

/** Friendly title plus the server's own words (and when to retry). */
function describe(error) {
  const code = error instanceof ApiError ? error.code : 'NETWORK';
  const retry = error.retryAfter ? ` Try again in ${error.retryAfter} s.` : '';
  return { title: FRIENDLY[code] ?? 'Something went wrong.', detail: `${error.message ?? ''}${retry}`.trim() };
}

function headers(extra = {}) {
  const key = sessionStorage.getItem(KEY_STORAGE);
  return key ? { ...extra, 'x-api-key': key } : extra;
}

/** fetch() against our API; error answers become ApiError with the API's code and message. */
async function api(path, init = {}) {
  let response;
  try {
    response = await fetch(path, { ...init, headers: headers(init.headers) });
  } catch (error) {
    throw new ApiError('NETWORK', `The request did not reach the server (${error.message}).`);
  }
  const text = await response.text();
  let body = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON
  }
  if (response.status >= 400) {
    const code = body?.error?.code ?? (response.status === 413 ? 'IMAGE_TOO_LARGE' : 'HTTP_' + response.status);
    throw new ApiError(code, body?.error?.message ?? `HTTP ${response.status}`, response.headers.get('retry-after'));
  }
  return { status: response.status, body };
}

function postJson(path, value) {
  return api(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(value) });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Image bytes from the API as an object URL (an <img src> could not carry the API key). */
async function imageUrl(hash) {
  const response = await fetch(`/v1/images/${hash}/content`, { headers: headers() });
  if (!response.ok) throw new ApiError('NOT_FOUND', `image ${hash.slice(0, 12)}… is not available`);
  return URL.createObjectURL(await response.blob());
}

function showError(error) {
  const box = $('#error');
  if (!error) {
    box.hidden = true;
    box.replaceChildren();
    return;
  }
  const { title, detail } = describe(error);
  box.replaceChildren(el('strong', { text: title }));
  if (detail) box.append(el('span', { text: detail }));
  box.hidden = false;
  if (error.code === 'UNAUTHORIZED') $('#key-panel').open = true;
}

function setStatus(text) {
  $('#status').textContent = text;
}

// ---------- API key ----------
function setupKey() {
  const input = $('#api-key');
  const refreshSummary = () => ($('#key-summary').textContent = sessionStorage.getItem(KEY_STORAGE) ? 'API key: set' : 'API key');
  input.value = sessionStorage.getItem(KEY_STORAGE) ?? '';
  refreshSummary();
  $('#key-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const key = input.value.trim();
    if (key) sessionStorage.setItem(KEY_STORAGE, key);
    else sessionStorage.removeItem(KEY_STORAGE);
    refreshSummary();
    $('#key-panel').open = false;
    showError(null);
    void loadModels();
  });
  $('#key-clear').addEventListener('click', () => {
    sessionStorage.removeItem(KEY_STORAGE);
    input.value = '';
    refreshSummary();
  });
}

// ---------- models ----------
async function loadModels() {
  const fieldset = $('#models');
  try {
    const { body } = await api('/v1/models');
    const legend = fieldset.querySelector('legend');
    fieldset.replaceChildren(legend);
    const byTask = new Map();
    for (const model of body.models) {
      if (!TASK_TITLES[model.task]) continue; // embeddings are used by face matching, not shown alone
      if (!byTask.has(model.task)) byTask.set(model.task, []);
      byTask.get(model.task).push(model);
    }
    let first = true;
    for (const [task, models] of byTask) {
      fieldset.append(el('h3', { text: TASK_TITLES[task] }));
      for (const model of models) {
        const checked = task === 'classification' && first;
        if (task === 'classification') first = false;
        fieldset.append(
          el(
            'label',
            {},
            el('input', { type: 'checkbox', name: 'model', value: model.name, checked, 'data-task': task }),
            el('span', { text: model.name }),
            el('small', { text: model.loaded ? shortDescription(model.description) : 'not loaded by any worker yet' }),
          ),
        );
      }
    }
    fieldset.append(el('h3', { text: FACE_TITLE }));
    fieldset.append(
      el('label', {}, el('input', { type: 'checkbox', name: 'model', value: FACE_MATCHING }), el('span', { text: 'Find the same person' }), el('small', { text: 'across every image you have stored' })),
    );
  } catch (error) {
    fieldset.querySelector('#models-loading')?.remove();
    showError(error);
  }
}

function shortDescription(text = '') {
  const sentence = text.split(/[.;(]/)[0].trim();
  return sentence.length > 60 ? `${sentence.slice(0, 57)}…` : sentence;
}

// ---------- picking images ----------
let picked = [];

function setPicked(files) {
  picked = [...files];
  $('#picked').textContent = picked.length === 0 ? 'No images chosen.' : `${plural(picked.length, 'image')} chosen: ${picked.map((f) => f.name).join(', ')}`;
}

function setupPicking() {
  const drop = $('#drop');
  $('#files').addEventListener('change', (event) => setPicked(event.target.files));
  for (const type of ['dragenter', 'dragover']) {
    drop.addEventListener(type, (event) => {
      event.preventDefault();
      drop.classList.add('over');
    });
  }
  for (const type of ['dragleave', 'drop']) drop.addEventListener(type, () => drop.classList.remove('over'));
  drop.addEventListener('drop', (event) => {
    event.preventDefault();
    if (event.dataTransfer?.files?.length) setPicked(event.dataTransfer.files);
  });
  document.addEventListener('paste', (event) => {
    const files = [...(event.clipboardData?.files ?? [])].filter((file) => file.type.startsWith('image/'));
    if (files.length) setPicked(files);
  });
}

// ---------- one result card per image ----------
class Card {
  constructor(title) {
    this.img = el('img', { alt: `${title}: the submitted image` });
    this.overlay = svgEl('svg', { 'aria-hidden': 'true', viewBox: '0 0 1 1', preserveAspectRatio: 'none' });
    this.figure = el('figure', { class: 'figure' }, this.img, this.overlay);
    this.outputs = el('div', { class: 'outputs' });
    this.meta = el('p', { class: 'meta', text: 'Uploading…' });
    this.node = el('li', { class: 'card', 'aria-busy': 'true' }, el('h3', { text: title }), this.meta, this.figure, this.outputs);
    this.layers = { object: svgEl('g'), face: svgEl('g') };
    this.overlay.append(this.layers.object, this.layers.face);
    this.sections = new Map();
    this.img.addEventListener('load', () => this.fitOverlay());
    // A file the browser cannot show (often the very file the server refuses): no broken-image icon.
    this.img.addEventListener('error', () => (this.figure.hidden = true));
    $('#results').prepend(this.node);
    $('#no-results').hidden = true;
  }

  /** The overlay uses the image's own pixel grid (after EXIF orientation, as the server reads it), so boxes scale with any display size. */
  fitOverlay() {
    if (this.img.naturalWidth) this.overlay.setAttribute('viewBox', `0 0 ${this.img.naturalWidth} ${this.img.naturalHeight}`);
  }

  get size() {
    return { width: this.img.naturalWidth || 1, height: this.img.naturalHeight || 1 };
  }

  setHash(hash, meta) {
    this.hash = hash;
    this.node.dataset.hash = hash;
    this.meta.textContent = meta ? `${meta.format.toUpperCase()} · ${meta.width}×${meta.height} · ${(meta.bytes / 1024).toFixed(0)} kB · id ${hash.slice(0, 12)}…` : `id ${hash.slice(0, 12)}…`;
    if (!this.eraseButton) {
      this.eraseButton = el('button', { type: 'button', class: 'secondary erase', text: 'Delete this image' });
      this.eraseButton.addEventListener('click', () => this.erase());
      this.meta.after(this.eraseButton);
    }
  }

  /** Erases the image on the server (results, faces, matches, bytes) and says what went. */
  async erase() {
    const button = this.eraseButton;
    button.disabled = true;
    try {
      const { body } = await api(`/v1/images/${this.hash}`, { method: 'DELETE' });
      faceCards.delete(this);
      for (const other of faceCards) void other.refreshFaces();
      this.layers.object.replaceChildren();
      this.layers.face.replaceChildren();
      this.outputs.replaceChildren(el('p', { class: 'erased', role: 'status', text: `Deleted from the server: ${plural(body.removedResults, 'result')}, ${plural(body.removedFaces, 'face')}, the stored image.` }));
      this.sections.clear();
      button.remove();
      this.node.dataset.state = 'erased';
      this.settle();
    } catch (error) {
      button.disabled = false;
      showError(error);
    }
  }

  /** A titled block for one model (or face matching), replaced as its state changes. */
  section(key, title) {
    let section = this.sections.get(key);
    if (!section) {
      const state = el('span', { class: 'state', text: 'waiting…' });
      const body = el('div');
      section = { node: el('section', { class: 'model', 'data-model': key, 'data-state': 'waiting', 'aria-live': 'polite' }, el('h4', {}, el('span', { text: title }), state), body), state, body };
      this.sections.set(key, section);
      this.outputs.append(section.node);
    }
    return section;
  }

  setState(key, title, state, text = state) {
    const section = this.section(key, title);
    section.node.dataset.state = state;
    section.state.textContent = text;
    section.state.className = `state ${state}`;
    return section;
  }

  fail(key, title, error) {
    const section = this.setState(key, title, 'failed', 'failed');
    const { title: friendly, detail } = describe(error);
    section.body.replaceChildren(el('p', { class: 'failed-msg', role: 'alert' }, el('strong', { text: friendly }), ` ${detail}`));
    this.settle();
  }

  settle() {
    const busy = [...this.sections.values()].some((section) => !['completed', 'failed', 'forgotten'].includes(section.node.dataset.state));
    this.node.setAttribute('aria-busy', String(busy));
    if (!busy && this.meta.textContent === 'Uploading…') this.meta.textContent = 'Not stored.';
  }

  drawBoxes(layer, items, label) {
    const { width } = this.size;
    const fontSize = Math.max(12, width / 40);
    const group = this.layers[layer];
    for (const [index, item] of items.entries()) {
      const { x, y, width: w, height: h } = item.box;
      group.append(svgEl('rect', { class: `box ${layer}`, x, y, width: w, height: h }));
      const text = svgEl('text', { class: 'tag', x, y: Math.max(fontSize, y - fontSize * 0.3), 'font-size': fontSize });
      text.textContent = label(item, index);
      group.append(text);
      for (const [lx, ly] of item.landmarks ?? []) group.append(svgEl('circle', { class: 'landmark', cx: lx, cy: ly, r: Math.max(2, width / 200) }));
    }
  }

  renderResult(model, task, view) {
    if (view.state === 'failed') return this.fail(model, model, new ApiError(view.error?.code, view.error?.message));
    const section = this.setState(model, model, 'completed', view.cached ? 'done (stored result)' : 'done');
    const result = view.result ?? {};
    if (result.predictions) {
      section.body.replaceChildren(
        el(
          'ol',
          { class: 'bars', 'aria-label': `${model} top labels` },
          ...result.predictions.slice(0, 5).map((p) =>
            el('li', {}, el('span', { class: 'label', text: p.label.replace(/_/g, ' ') }), el('span', { class: 'pct', text: percent(p.probability) }), el('span', { class: 'bar', 'aria-hidden': 'true' }, el('span', { style: { width: `${(p.probability * 100).toFixed(1)}%` } }))),
          ),
        ),
      );
    } else if (result.objects) {
      this.drawBoxes('object', result.objects, (o) => `${o.label} ${Math.round(o.score * 100)}%`);
      section.body.replaceChildren(
        result.objects.length ? el('ul', { class: 'objects' }, ...result.objects.map((o) => el('li', { text: `${o.label} ${percent(o.score)} at ${Math.round(o.box.x)},${Math.round(o.box.y)} (${Math.round(o.box.width)}×${Math.round(o.box.height)})` }))) : el('p', { text: 'No objects found.' }),
      );
    } else if (result.faces) {
      this.drawBoxes('face', result.faces, (f) => percent(f.score));
      section.body.replaceChildren(el('p', { class: 'face-count', text: `${plural(result.faces.length, 'face')} found.` }));
    } else {
      section.body.replaceChildren(el('p', { text: task === 'face-embedding' ? 'Embedding computed.' : 'Done.' }));
    }
    this.settle();
  }

  renderFaces(view) {
    const section = this.setState(FACE_MATCHING, FACE_TITLE, 'completed', 'done');
    this.layers.face.replaceChildren();
    this.drawBoxes('face', view.faces, (_, i) => `Face ${i + 1}`);
    const blocks = view.faces.map((face, i) => {
      const gallery = el('ul', { class: 'gallery', 'aria-label': `Images matching face ${i + 1}` });
      const seen = new Set();
      for (const match of face.matches) {
        if (seen.has(match.imageHash)) continue;
        seen.add(match.imageHash);
        const thumb = el('img', { alt: `matching image ${match.imageHash.slice(0, 12)}…`, loading: 'lazy' });
        imageUrl(match.imageHash).then((url) => (thumb.src = url), () => (thumb.alt = 'image no longer stored'));
        gallery.append(el('li', { 'data-hash': match.imageHash }, thumb, el('span', { text: `${percent(match.similarity)} similar` })));
      }
      const more = (face.matchCount ?? face.matches.length) - face.matches.length;
      return el(
        'div',
        { class: 'face', 'data-face': face.faceId },
        el('strong', { text: `Face ${i + 1}` }),
        face.matches.length ? gallery : el('p', { class: 'hint', text: 'No match among the stored images yet.' }),
        more > 0 ? el('p', { class: 'hint', text: `…and ${plural(more, 'more matching face')} (the strongest are shown).` }) : undefined,
      );
    });
    const forget = el('button', { type: 'button', class: 'secondary forget', text: 'Forget this image’s faces' });
    forget.addEventListener('click', () => this.forget(forget));
    const matched = view.matchedImageCount ?? view.matchedImages.length;
    const summary = view.faces.length === 0 ? 'No faces found in this image.' : `${plural(view.faces.length, 'face')}, ${plural(matched, 'matching image')}.`;
    section.body.replaceChildren(el('p', { class: 'face-summary', text: summary }), ...blocks);
    if (view.faces.length) section.body.append(forget);
    this.settle();
  }

  async refreshFaces() {
    const state = this.sections.get(FACE_MATCHING)?.node.dataset.state;
    if (state !== 'completed') return;
    try {
      const answer = await api(`/v1/images/${this.hash}/matches`);
      if (answer.status === 200) this.renderFaces(answer.body);
    } catch {
      // forgotten or expired meanwhile: keep what is shown
    }
  }

  async forget(button) {
    button.disabled = true;
    try {
      const { body } = await api(`/v1/images/${this.hash}/faces`, { method: 'DELETE' });
      this.layers.face.replaceChildren();
      const section = this.setState(FACE_MATCHING, FACE_TITLE, 'forgotten', 'forgotten');
      faceCards.delete(this);
      for (const other of faceCards) void other.refreshFaces();
      section.body.replaceChildren(el('p', { text: `Forgotten: ${plural(body.removedFaces, 'face')} removed from the index and from ${plural(body.updatedImages, 'other image')}’ matches.` }));
    } catch (error) {
      button.disabled = false;
      this.fail(FACE_MATCHING, FACE_TITLE, error);
    }
  }
}

// ---------- running the work ----------
/** Sends the image for analysis; resolves with the stored image (its hash and each model's state). */
async function submitAnalysis(card, source, models) {
  for (const model of models) card.setState(model, model, 'waiting', 'uploading…');
  let accepted;
  if (source.file) {
    const form = new FormData();
    form.append('images', source.file, source.file.name);
    form.append('models', models.join(','));
    accepted = await api('/v1/analyses', { method: 'POST', body: form });
  } else {
    accepted = await postJson('/v1/analyses', { urls: [source.url], models });
  }
  return accepted.body.images[0];
}

async function followAnalysis(card, image, source, models, tasks) {
  await identify(card, image.hash, source);
  for (const model of models) card.setState(model, model, image.models[model].state, image.models[model].state === 'active' ? 'running…' : 'queued…');
  await follow(card, image.hash, models, tasks);
}

/**
 * Names the card by content hash, and shows the stored image when the browser has no local copy (URL input).
 * Analyses and face matching both call it; the first call does the work and the second waits for it.
 */
function identify(card, hash, source) {
  card.identified ??= describeCard(card, hash, source);
  return card.identified;
}

async function describeCard(card, hash, source) {
  let meta;
  try {
    meta = (await api(`/v1/images/${hash}`)).body.image;
  } catch {
    // face-only images have no analysis metadata; the hash alone names them
  }
  card.setHash(hash, meta);
  if (!source.file && !card.img.src) card.img.src = await imageUrl(hash);
}

/** Times the page opens an image's event stream: the first, then again after each "try later" (at most 3 more). */
const STREAM_ATTEMPTS = 4;
/** Longest wait (s) taken from a server's hint before opening the stream again. */
const MAX_RETRY_WAIT_S = 30;

/**
 * Live results from the server-sent events (read with fetch so the API key header goes along). When the server says
 * "try later" (the stream's `error` event with `retryAfterSeconds`, e.g. Redis full; or a 503/429 with Retry-After
 * instead of a stream) the stream is opened again after that wait, which also queues again what nothing computes;
 * polling when the stream breaks otherwise, or after the last attempt.
 */
async function follow(card, hash, models, tasks) {
  const pending = new Set(models);
  for (let attempt = 1; attempt <= STREAM_ATTEMPTS && pending.size > 0; attempt++) {
    const retryAfter = await readEvents(card, hash, pending, tasks);
    if (retryAfter === undefined || attempt === STREAM_ATTEMPTS) break;
    for (const model of pending) card.setState(model, model, 'waiting', `busy, trying again in ${retryAfter} s…`);
    await sleep(Math.min(retryAfter, MAX_RETRY_WAIT_S) * 1000);
  }
  const deadline = Date.now() + 120_000;
  while (pending.size > 0 && Date.now() < deadline) {
    try {
      const { body } = await api(`/v1/images/${hash}`);
      for (const model of [...pending]) {
        const view = body.models[model];
        if (view && (view.state === 'completed' || view.state === 'failed')) {
          pending.delete(model);
          card.renderResult(model, tasks[model], view);
        }
      }
    } catch {
      // keep trying until the deadline
    }
    if (pending.size > 0) await sleep(1000);
  }
  for (const model of pending) card.fail(model, model, new ApiError('DEADLINE_EXCEEDED', 'no result within 2 minutes; it may still arrive: submit again later'));
}

/**
 * One event stream of `hash`: renders each `result` of a `pending` model (and removes it from `pending`). Resolves
 * with the wait in seconds the server asked for when it said "try later", else undefined (the stream ended, or
 * broke without a hint).
 */
async function readEvents(card, hash, pending, tasks) {
  const waitOf = (value) => (Number(value) > 0 ? Number(value) : undefined);
  try {
    const response = await fetch(`/v1/images/${hash}/events`, { headers: headers({ accept: 'text/event-stream' }) });
    if (response.status === 503 || response.status === 429) return waitOf(response.headers.get('retry-after'));
    if (!response.ok || !response.body) return undefined;
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return undefined;
      buffer += value;
      let split;
      while ((split = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, split);
        buffer = buffer.slice(split + 2);
        const event = /^event: (.*)$/m.exec(block)?.[1];
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (event === 'result' && data) {
          const view = JSON.parse(data);
          if (pending.delete(view.model)) card.renderResult(view.model, tasks[view.model], view);
        } else if (event === 'error') {
          void reader.cancel().catch(() => undefined);
          return waitOf(data && JSON.parse(data).retryAfterSeconds);
        }
      }
    }
  } catch {
    return undefined;
  }
}

/** Cards showing face matches, refreshed when a later image's faces arrive. */
const faceCards = new Set();

/** Face matching for a source, or for `stored` (an image the analysis upload already stored), which is then not sent again. */
async function matchFaces(card, source, stored) {
  card.setState(FACE_MATCHING, FACE_TITLE, 'waiting', stored ? 'queued…' : 'uploading…');
  try {
    let answer;
    if (stored) {
      answer = await postJson('/v1/faces', { imageHash: stored.hash });
    } else if (source.file) {
      const form = new FormData();
      form.append('image', source.file, source.file.name);
      answer = await api('/v1/faces', { method: 'POST', body: form });
    } else {
      answer = await postJson('/v1/faces', { url: source.url });
    }
    const hash = answer.body.imageHash;
    await identify(card, hash, source);
    const deadline = Date.now() + 120_000;
    while (answer.status === 202 && Date.now() < deadline) {
      card.setState(FACE_MATCHING, FACE_TITLE, 'active', 'running…');
      await sleep(1000);
      answer = await api(`/v1/images/${hash}/matches`);
    }
    if (answer.status === 202) throw new ApiError('DEADLINE_EXCEEDED', 'no answer within 2 minutes');
    card.renderFaces(answer.body);
    // Match sets are symmetric: images shown earlier may now match this one, so their galleries are refreshed.
    for (const other of faceCards) if (other !== card && other.hash !== card.hash) void other.refreshFaces();
    faceCards.add(card);
  } catch (error) {
    card.fail(FACE_MATCHING, FACE_TITLE, error);
  }
}

/** Everything chosen for one image, with one upload: when both are chosen, face matching uses the image the analysis stored. */
async function run(card, source, models, tasks, faces) {
  let stored;
  if (models.length) {
    try {
      stored = await submitAnalysis(card, source, models);
    } catch (refusal) {
      for (const model of models) card.fail(model, model, refusal);
      if (faces) card.fail(FACE_MATCHING, FACE_TITLE, refusal);
      return;
    }
  }
  await Promise.all([stored ? followAnalysis(card, stored, source, models, tasks) : undefined, faces ? matchFaces(card, source, stored) : undefined]);
}

async function submit(event) {
  event.preventDefault();
  showError(null);
  const chosen = [...document.querySelectorAll('#models input[name=model]:checked')];
  const models = chosen.map((input) => input.value).filter((name) => name !== FACE_MATCHING);
  const tasks = Object.fromEntries(chosen.map((input) => [input.value, input.dataset.task]));
  const faces = chosen.some((input) => input.value === FACE_MATCHING);
  const url = $('#url').value.trim();
  const sources = [...picked.map((file) => ({ file, title: file.name })), ...(url ? [{ url, title: url }] : [])];
  if (sources.length === 0) return showError(new ApiError('IMAGE_MISSING', ''));
  if (models.length === 0 && !faces) return showError(new ApiError('NOTHING_CHOSEN', 'Tick at least one model or face matching.'));

  const button = $('#submit');
  button.disabled = true;
  setStatus(`Working on ${plural(sources.length, 'image')}…`);
  const cards = sources.map((source) => {
    const card = new Card(source.title);
    if (source.file) card.img.src = URL.createObjectURL(source.file);
    return { card, source };
  });
  // Three images at a time: a big drop does not trip the rate limit or the queue limit at once.
  const lane = async () => {
    for (let next = cards.shift(); next; next = cards.shift()) {
      const { card, source } = next;
      await run(card, source, models, tasks, faces);
      card.settle();
    }
  };
  await Promise.all([lane(), lane(), lane()]);
  button.disabled = false;
  setPicked([]);
  $('#files').value = '';
  $('#url').value = '';
  setStatus(`Finished ${plural(sources.length, 'image')}.`);
}

setupKey();
setupPicking();
$('#submit-form').addEventListener('submit', submit);
void loadModels();
