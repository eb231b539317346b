/** Small helpers over Node's fetch for the e2e tests (loopback only). */
export interface HttpResult<T = any> {
  status: number;
  headers: Headers;
  body: T;
}

export async function request<T = any>(url: string, init?: RequestInit): Promise<HttpResult<T>> {
  if (!/^http:\/\/(127\.0\.0\.1|\[::1\]|localhost)(:\d+)?\//.test(url)) throw new Error(`tests only talk to loopback, not ${url}`);
  const response = await fetch(url, init);
  const text = await response.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: response.status, headers: response.headers, body: body as T };
}

export function multipart(fields: Record<string, string | { bytes: Buffer; filename: string; type?: string }>): FormData {
  const form = new FormData();
  for (const [name, value] of Object.entries(fields)) {
    if (typeof value === 'string') form.append(name, value);
    else form.append(name, new Blob([value.bytes], { type: value.type ?? 'application/octet-stream' }), value.filename);
  }
  return form;
}

export function postImage(url: string, bytes: Buffer, filename = 'image.jpg'): Promise<HttpResult> {
  return request(url, { method: 'POST', body: multipart({ image: { bytes, filename } }) });
}
