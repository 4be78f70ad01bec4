// Test-page helpers for the poster: a video stream of any size from a canvas (no camera
// needed), and the pixel size of an encoded image.

/** A `width`×`height` canvas stream, redrawn every 40 ms (a canvas track yields nothing
 * unless drawn on); `stop()` ends the drawing and the track. */
export function canvasStream(width, height) {
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext("2d");
  let frame = 0;
  const draw = () => {
    frame += 1;
    context.fillStyle = `hsl(${(frame * 7) % 360} 70% 50%)`;
    context.fillRect(0, 0, width, height);
    context.fillStyle = "white";
    context.fillRect((frame * 10) % width, height / 4, width / 8, height / 2);
  };
  draw();
  const timer = setInterval(draw, 40);
  const stream = canvas.captureStream(25);
  stream.stopDrawing = () => {
    clearInterval(timer);
    stream.getTracks().forEach((t) => t.stop());
  };
  return stream;
}

/** `[width, height]` of an encoded image (Blob or bytes). */
export async function imageSize(image) {
  const blob = image instanceof Blob ? image : new Blob([image]);
  const bitmap = await createImageBitmap(blob);
  const size = [bitmap.width, bitmap.height];
  bitmap.close();
  return size;
}
