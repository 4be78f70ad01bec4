// A hash router: `#/` feed, `#/live/{id}` a live in progress, `#/post/{id}` a recording and its chat.
import { useEffect, useState } from "react";

export type Route = { page: "home" } | { page: "live"; id: number } | { page: "post"; id: number };

export function parseRoute(hash: string): Route {
  const match = hash.match(/^#\/(live|post)\/(\d{1,15})$/);
  if (!match) return { page: "home" };
  return { page: match[1] as "live" | "post", id: Number(match[2]) };
}

export const hrefFor = (route: Route) => (route.page === "home" ? "#/" : `#/${route.page}/${route.id}`);

export function navigate(route: Route) {
  window.location.hash = hrefFor(route);
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(window.location.hash));
  useEffect(() => {
    const onChange = () => setRoute(parseRoute(window.location.hash));
    window.addEventListener("hashchange", onChange);
    return () => window.removeEventListener("hashchange", onChange);
  }, []);
  return route;
}
